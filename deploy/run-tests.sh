#!/bin/sh
# Run every test of margin: install dependencies (Debian 12), build with
# warnings as errors, run all meson test suites (unit suites in CUnit,
# integration tests with real processes on 127.0.0.1, the GGUF fuzz replay).
#   deploy/run-tests.sh [BUILD_DIR] [--sanitize]
# --sanitize: an AddressSanitizer + UndefinedBehaviorSanitizer build
# (debugoptimized) running the same suites, the integration scenarios
# included, with every report fatal (a leak, an overflow, undefined
# behaviour: the program exits non-zero and the test fails); only the numpy
# reference suite is left out (its code is the worker suite's). Timeouts are
# tripled. BUILD_DIR defaults to build-test, or build-asan with --sanitize.
# The reference models and test vectors are read from ../shared beside the
# source tree, or from $MARGIN_SHARED_DIR.
set -eu
cd "$(dirname "$0")/.."
BUILD=""
SANITIZE=""
for a in "$@"; do
	case $a in
	--sanitize) SANITIZE=1 ;;
	-*) echo "usage: deploy/run-tests.sh [BUILD_DIR] [--sanitize]" >&2; exit 2 ;;
	*) BUILD=$a ;;
	esac
done
[ -n "$BUILD" ] || BUILD=$([ -n "$SANITIZE" ] && echo build-asan || echo build-test)

deploy/install-deps.sh

if [ ! -d "$BUILD" ]; then
	if [ -n "$SANITIZE" ]; then
		meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false \
			-Dwerror=true -Dtests=enabled -Dbuildtype=debugoptimized
	else
		meson setup "$BUILD" -Dwerror=true -Dtests=enabled
	fi
fi
ninja -C "$BUILD"
rc=0
if [ -n "$SANITIZE" ]; then
	# The programs the integration scenarios start inherit these.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$BUILD" --no-suite ref --print-errorlogs --num-processes 2 \
			--timeout-multiplier 3 || rc=$?
else
	meson test -C "$BUILD" --print-errorlogs --num-processes 2 || rc=$?
fi
python3 deploy/test-summary.py tests "$BUILD" || rc=1
exit $rc
