#!/usr/bin/python3
"""Connection abuse against margind's HTTP API, with the default limits.

Starts margind (no workers: only the HTTP side is measured), then for each
phase holds connections that never finish a request and measures, from
127.0.0.1 (where a health checker sits), a fresh-connection GET /healthz and
an authorized GET /v1/files every 50 ms:

  baseline     nothing held
  idle         2,000 connections that send nothing (reopened when closed)
  slowloris    2,000 connections that send a request line, then one header
               line every 3 s and never the blank line
  both         2,000 idle and 2,000 slowloris at once
  one-address  2,000 idle from a single address (the per-address limit)

The attackers come from 127.0.0.2 and up, 100 connections an address (20
"hosts" a phase), as clients on other machines would: 127.0.0.1 is the
checker's. It prints, a phase a line: connections the server holds
(margind's open descriptors less its idle count), connections it closed
or refused (the attackers reopen them), healthz and API latency (median,
p99, max, failures), margind's open descriptors, RSS and threads. A
figure, never a pass/fail: run it several times on
a quiet machine and quote medians.

  bench/http_abuse.py [BUILD_DIR] [--hold SECONDS] [--phases a,b,...]
"""
import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

KEY = "sk-bench-abuse"


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def proc_figures(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return fds, rss, threads


class Attack:
    """Holds n connections of one kind from addresses 127.0.0.first.. (per
    an address), reopening those the server closes, at most once a second
    each."""

    def __init__(self, port, n, kind, first=2, per=100):
        self.port, self.n, self.kind = port, n, kind
        self.addrs = [f"127.0.0.{first + i // per}" for i in range(n)]
        self.socks = [None] * n
        self.last_try = [0.0] * n
        self.refused = 0
        self.stop = threading.Event()
        self.sel = selectors.DefaultSelector()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self, i):
        self.last_try[i] = time.monotonic()
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((self.addrs[i], 0))
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            self.refused += 1
            return
        self.socks[i] = s
        self.sel.register(s, selectors.EVENT_READ, i)
        if self.kind == "slowloris":
            self.send(i, b"GET /v1/files HTTP/1.1\r\nHost: margind\r\n")

    def send(self, i, data):
        try:
            self.socks[i].send(data)
        except (BlockingIOError, OSError):
            pass

    def close(self, i):
        s = self.socks[i]
        if s is not None:
            self.sel.unregister(s)
            s.close()
            self.socks[i] = None

    def run(self):
        for i in range(self.n):
            self.open(i)
        last_drip = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                i = key.data
                try:
                    data = self.socks[i].recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:        # closed or refused by the server
                    self.refused += 1
                    self.close(i)
            now = time.monotonic()
            for i in range(self.n):
                if self.socks[i] is None and now - self.last_try[i] >= 1.0:
                    self.open(i)
            if self.kind == "slowloris" and now - last_drip >= 3.0:
                last_drip = now
                for i in range(self.n):
                    if self.socks[i] is not None:
                        self.send(i, b"X-Slow: %d\r\n" % int(now))
        for i in range(self.n):
            self.close(i)

    def held(self):
        return sum(s is not None for s in self.socks)


def probe(port, path, auth):
    """One request on a fresh connection: seconds, or None when it failed."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        hdr = f"Authorization: Bearer {KEY}\r\n" if auth else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: margind\r\n{hdr}Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 200"):
        return None
    return time.monotonic() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def run_phase(name, port, pid, base_fds, attacks, hold):
    for a in attacks:
        a.thread.start()
    time.sleep(2.0)  # the connections are opened
    lat = {"healthz": [], "api": []}
    fail = {"healthz": 0, "api": 0}
    samples = []
    t_end = time.monotonic() + hold
    while time.monotonic() < t_end:
        for k, path, auth in (("healthz", "/healthz", False), ("api", "/v1/files", True)):
            t = probe(port, path, auth)
            if t is None:
                fail[k] += 1
            else:
                lat[k].append(t)
        samples.append(proc_figures(pid))
        time.sleep(0.05)
    fds = statistics.median(s[0] for s in samples)
    rss = max(s[1] for s in samples)
    threads = max(s[2] for s in samples)
    held = sum(a.held() for a in attacks)
    refused = sum(a.refused for a in attacks)
    for a in attacks:
        a.stop.set()
    for a in attacks:
        a.thread.join()

    def ms(x):
        return f"{x * 1000:.1f}"

    h, a = lat["healthz"], lat["api"]
    print(f"{name:<12} held={int(fds - base_fds):>5} client_open={held:>5} closed_by_server={refused:>6} "
          f"healthz_ms(median/p99/max)={ms(statistics.median(h)) if h else '-'}/{ms(pct(h, 99)) if h else '-'}/"
          f"{ms(max(h)) if h else '-'} fail={fail['healthz']}/{len(h) + fail['healthz']} "
          f"api_ms={ms(statistics.median(a)) if a else '-'}/{ms(pct(a, 99)) if a else '-'}/"
          f"{ms(max(a)) if a else '-'} fail={fail['api']}/{len(a) + fail['api']} "
          f"margind_fds={int(fds)} rss_mb={rss / 1024:.1f} threads={threads}", flush=True)
    time.sleep(12)  # the server's idle timeout (10 s) closes what is left


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds measured a phase (10)")
    ap.add_argument("--phases", default="baseline,idle,slowloris,both,one-address")
    ap.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE passed to margind")
    args = ap.parse_args()
    margind = os.path.join(args.build, "daemon", "margind")
    if not os.access(margind, os.X_OK):
        sys.exit(f"http_abuse: {margind} is missing: build first (ninja -C {args.build} daemon/margind)")
    nofile = raise_nofile(8192)
    if nofile < 4500:
        sys.exit(f"http_abuse: 4500 descriptors needed, the hard limit allows {nofile}")
    run = tempfile.mkdtemp(prefix="margin-abuse-")
    keys = os.path.join(run, "keys")
    with open(keys, "w") as f:
        f.write(KEY + "\n")
    os.chmod(keys, 0o600)
    cmd = [margind, "--state-dir", os.path.join(run, "state"), "--http", "127.0.0.1:0",
           "--workers", "tcp://127.0.0.1:0", "--no-curve", "--api-keys", keys, "--log-level", "warn"]
    for s in args.set:
        cmd += ["--set", s]
    log = open(os.path.join(run, "margind.log"), "w")
    d = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        url_file = os.path.join(run, "state", "http")
        for _ in range(200):
            if os.path.exists(url_file) and os.path.getsize(url_file) > 0:
                break
            time.sleep(0.05)
        port = int(open(url_file).read().strip().rsplit(":", 1)[1])
        load = os.getloadavg()
        print(f"margind pid={d.pid} port={port} client_nofile={nofile} load={load[0]:.2f} "
              f"cpus={os.cpu_count()}", flush=True)
        base_fds = proc_figures(d.pid)[0]
        phases = {
            "baseline": lambda: [],
            "idle": lambda: [Attack(port, 2000, "idle", first=2)],
            "slowloris": lambda: [Attack(port, 2000, "slowloris", first=2)],
            "both": lambda: [Attack(port, 2000, "idle", first=2), Attack(port, 2000, "slowloris", first=30)],
            "one-address": lambda: [Attack(port, 2000, "idle", first=2, per=2000)],
        }
        for name in args.phases.split(","):
            if name not in phases:
                sys.exit(f"http_abuse: unknown phase {name}: expected {', '.join(phases)}")
            run_phase(name, port, d.pid, base_fds, phases[name](), args.hold)
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.kill()
        log.close()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
