#!/bin/sh
# Install every build and test dependency of margin on Debian 12 (bookworm).
# Debian packages only; safe to run twice (apt-get install is idempotent).
set -eu

PKGS="
  build-essential pkg-config meson ninja-build
  libzmq3-dev libczmq-dev libsodium-dev
  protobuf-c-compiler libprotobuf-c-dev
  libopenblas-dev
  libcunit1-dev
  libsqlite3-dev sqlite3
  libjansson-dev
  libmicrohttpd-dev
  libcurl4-openssl-dev
  libsystemd-dev
  libinih-dev
  libpcre2-dev
  python3 python3-yaml python3-numpy curl
  iproute2 nftables
"

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
