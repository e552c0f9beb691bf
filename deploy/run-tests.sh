#!/bin/sh
# Run every test of margin: install dependencies (Debian 12), build with
# warnings as errors, run all meson test suites (unit, integration).
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
meson test -C "$BUILD" --print-errorlogs --num-processes 2
