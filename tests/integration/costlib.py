"""What the Python scenarios of the meter share (test_cost.py,
test_prices.py, test_plan.py): a temporary directory T, the processes
started (PROCS, killed at the end), fail/check/note, the programs from the
environment meson sets, and margind and its workers started on 127.0.0.1.

The script's name (test_NAME.py) names its temporary directory and its
messages; its first argument is the scenario.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NAME = os.path.basename(sys.argv[0]).removeprefix("test_").removesuffix(".py")
SCENARIO = sys.argv[1] if len(sys.argv) > 1 else ""
T = tempfile.mkdtemp(prefix="margin-%s-" % NAME)
PROCS = []


def fail(msg):
    """The message, the tail of every log in T, and exit 1."""
    sys.stderr.write("FAIL [%s]: %s\n" % (SCENARIO or NAME, msg))
    for name in sorted(os.listdir(T)):
        if name.endswith(".log"):
            with open(os.path.join(T, name), errors="replace") as f:
                lines = f.readlines()[-30:]
            sys.stderr.write("---- %s ----\n%s" % (name, "".join(lines)))
    raise SystemExit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def note(msg):
    sys.stderr.write("test_%s[%s]: %s\n" % (NAME, SCENARIO, msg))


def env(name):
    v = os.environ.get(name, "")
    check(v != "", "$%s is not set (run through meson test)" % name)
    return v


def data_env():
    """The hardware profiles and price tables of the source tree's deploy/."""
    deploy = env("MARGIN_DEPLOY_DIR")
    return {"MARGIN_HARDWARE_DIR": os.path.join(deploy, "hardware"),
            "MARGIN_PRICES_DIR": os.path.join(deploy, "prices")}


def shared_dir():
    d = os.environ.get("MARGIN_SHARED_DIR", "")
    if d:
        return d
    return os.path.join(os.path.dirname(env("MARGIN_DEPLOY_DIR")), "..", "shared")


def run(argv, ok=(0,), extra_env=None):
    """argv to its end (120 s at most); its exit status must be in ok."""
    e = dict(os.environ)
    e.update(extra_env or {})
    p = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=120)
    if p.returncode not in ok:
        fail("%s exited %d (wanted %s)\nstdout: %s\nstderr: %s" % (" ".join(argv), p.returncode, ok,
                                                                   p.stdout[-3000:], p.stderr[-3000:]))
    return p


def spawn(name, argv, extra_env=None):
    """argv in the background, its output to T/NAME.log."""
    e = dict(os.environ)
    e.update(extra_env or {})
    log = open(os.path.join(T, name + ".log"), "ab")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=e)
    PROCS.append(p)
    return p


def wait_until(what, cond, seconds=60):
    end = time.monotonic() + seconds
    while not cond():
        check(time.monotonic() < end, "%s: not after %d s" % (what, seconds))
        time.sleep(0.05)


def margind(state, flags):
    """margind on 127.0.0.1 with state directory STATE, the source tree's
    hardware profiles and price tables, and FLAGS; its log is
    T/margind.log. Returns its HTTP URL and its workers' endpoint."""
    deploy = env("MARGIN_DEPLOY_DIR")
    spawn("margind", [env("MARGIND"), "--state-dir", state, "--http", "127.0.0.1:0", "--workers", "tcp://127.0.0.1:0",
                      "--no-curve", "--set", "scheduler.heartbeat=500ms",
                      "--set", "meter.hardware_dir=" + os.path.join(deploy, "hardware"),
                      "--set", "meter.prices_dir=" + os.path.join(deploy, "prices")] + flags)
    wait_until("margind up", lambda: os.path.exists(os.path.join(state, "http"))
               and os.path.exists(os.path.join(state, "endpoints")), 20)
    url = open(os.path.join(state, "http")).read().strip()
    wep = [l.split("=", 1)[1].strip() for l in open(os.path.join(state, "endpoints")) if l.startswith("workers=")][0]
    return url, wep


def wait_workers(url, n, seconds=30):
    """margind at URL says (/readyz) that N workers are connected."""
    def ready():
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                return json.load(r).get("workers", 0) >= n
        except (urllib.error.URLError, OSError):
            return False
    wait_until("%d worker(s)" % n, ready, seconds)


def main(scenarios):
    """Runs the scenario named by the first argument (170 s at most), then
    kills what it started and removes T (unless KEEP_TMP is set)."""
    if SCENARIO not in scenarios:
        sys.stderr.write("usage: test_%s.py %s\n" % (NAME, "|".join(scenarios)))
        return 2
    signal.signal(signal.SIGALRM, lambda *_: fail("scenario timed out"))
    signal.alarm(170)
    try:
        scenarios[SCENARIO]()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(T, ignore_errors=True)
    return 0
