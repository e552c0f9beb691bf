#!/bin/sh
# The main job on the built-in default model: install dependencies, build,
# then generate with the synthetic llama-110m preset.
#   deploy/quickstart.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}

deploy/install-deps.sh
if [ ! -d "$BUILD" ]; then
	meson setup "$BUILD" -Dbuildtype=release
fi
ninja -C "$BUILD"

W="$BUILD/worker/margin-worker"
echo "== margin-worker run --arch llama-110m"
"$W" run --arch llama-110m --prompt "Once upon a time" -n 32
