#!/bin/sh
# What the kernel lab needs on a Debian 12 host (root): QEMU, busybox, nftables, the three Debian kernels with their
# headers (the lab module is built against them), a compiler. Kernels come from bookworm (6.1), bullseye (5.10)
# and bookworm-backports (6.12): their suites are added in one sources file. Nothing here loads a module or
# changes the running kernel.
set -eu
SOURCES=/etc/apt/sources.list.d/kmem-lab.sources
if [ ! -f "$SOURCES" ]; then
  cat > "$SOURCES" <<'END'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
END
  apt-get update -qq
fi
# The package a bullseye meta-package points to (its versioned kernel or headers).
bullseye() { apt-cache show "$1/bullseye" | awk '/^Depends:/ { print $2; exit }'; }
if [ -z "$(bullseye linux-image-amd64)" ]; then apt-get update -qq; fi
PACKAGES="qemu-system-x86 busybox-static nftables iproute2 e2fsprogs kmod make gcc
  linux-image-amd64 linux-headers-amd64 linux-image-6.12-amd64 linux-headers-6.12-amd64
  $(bullseye linux-image-amd64) $(bullseye linux-headers-amd64)"
missing=""
for package in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
if [ -n "$missing" ]; then
  echo "lab-setup: installing$missing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
