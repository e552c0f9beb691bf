#!/usr/bin/env python3
"""Summarise meson test logs: the CUnit run summaries of the unit suites,
then one closing line 'LABEL: N passed, N failed[, N skipped]' that counts
each CUnit test and each other meson test (integration scenario, fuzz
replay) once. An argument that is a file rather than a build directory is
read as a test log of that shape itself (tests/multihost/ci.sh writes one:
BUILD_DIR/multihost-testlog.json).

    deploy/test-summary.py LABEL BUILD_DIR|TESTLOG.json [...]
"""
import json
import os
import sys


def cunit_failures(out):
    """The lines of CUnit's verbose output that name a failed test and its
    failed assertions (file:line and the expression), so that a CI log says
    which test failed, not only how many."""
    lines = out.splitlines()
    res = []
    suite = ""
    i = 0
    while i < len(lines):
        l = lines[i]
        if l.startswith("Suite: "):
            suite = l[len("Suite: "):].strip()
        if "...FAILED" in l:
            res.append(f"FAILED {suite}: {l.strip().replace('...FAILED', '').strip()}")
            i += 1
            while i < len(lines) and lines[i][:1] == " " and "Test:" not in lines[i]:
                res.append("  " + lines[i].strip())
                i += 1
            continue
        i += 1
    return res


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    label = sys.argv[1]
    passed = failed = skipped = 0
    for build in sys.argv[2:]:
        path = build if os.path.isfile(build) else f"{build}/meson-logs/testlog.json"
        try:
            with open(path, encoding="utf-8") as f:
                lines = [json.loads(l) for l in f if l.strip()]
        except OSError as e:
            print(f"{label}: no test log in {build}: {e}", file=sys.stderr)
            failed += 1
            continue
        for t in lines:
            res = t.get("result", "")
            out = t.get("stdout") or ""
            if "Run Summary" in out:
                tail = out[out.index("Run Summary"):].splitlines()[:4]
                print(f"-- {build}: {t.get('name')} (CUnit)")
                print("\n".join("   " + l for l in tail))
                for l in cunit_failures(out):
                    print("   " + l)
                # count the CUnit tests themselves: "tests Total Ran Passed Failed Inactive"
                row = [l.split() for l in tail if l.split()[:1] == ["tests"]]
                if row and len(row[0]) >= 5 and res in ("OK", "FAIL"):
                    passed += int(row[0][3])
                    failed += int(row[0][4]) + (1 if res == "FAIL" and row[0][4] == "0" else 0)
                    continue
            if res in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif res == "SKIP":
                skipped += 1
                print(f"-- {build}: {t.get('name')} SKIPPED")
            else:
                failed += 1
    line = f"{label}: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
