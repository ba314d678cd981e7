#!/usr/bin/env bash
# Installs the Debian packages pmd needs to build, test and run.
# Runs apt-get only when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libfabric-dev libibverbs-dev librdmacm-dev
      libcmocka-dev libinih-dev libsodium-dev liburing-dev iproute2 procps
      python3 groff-base fuse3 libfuse3-dev fio attr
      clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
