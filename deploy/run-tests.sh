#!/bin/sh
# Run every test of margin: install dependencies (Debian 12), build with
# warnings as errors, run all meson test suites (unit suites in CUnit,
# integration tests with real processes on 127.0.0.1, the GGUF fuzz replay).
#   deploy/run-tests.sh [BUILD_DIR]
# The reference models and test vectors are read from ../shared beside the
# source tree, or from $MARGIN_SHARED_DIR.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build-test}

deploy/install-deps.sh

if [ ! -d "$BUILD" ]; then
	meson setup "$BUILD" -Dwerror=true -Dtests=enabled
fi
ninja -C "$BUILD"
rc=0
meson test -C "$BUILD" --print-errorlogs --num-processes 2 || rc=$?
python3 deploy/test-summary.py tests "$BUILD" || rc=1
exit $rc
