#!/usr/bin/env bash
# Build a local Debian bookworm + python3 base image for the Dockerfile, without any container registry.
#
#   deploy/image/local-base.sh [IMAGE]      (default IMAGE: localhost/kmem-exporter-base:bookworm)
#
# The root filesystem is made with debootstrap from the Debian mirror this machine's apt already uses, gets this
# machine's extra CA certificates (so pip works behind a TLS-inspecting proxy), is cached as a tarball under
# $KMEM_IMAGE_CACHE (default /var/cache/kmem-exporter), and is committed into buildah's local store. An image that
# is already there is kept (`buildah rmi IMAGE` to make it again; delete the tarball to debootstrap again).
# Needs root, debootstrap and buildah. Then:
#
#   buildah build --build-arg PYTHON_IMAGE=localhost/kmem-exporter-base:bookworm -t kmem-exporter .
set -euo pipefail

IMAGE=${1:-localhost/kmem-exporter-base:bookworm}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
CACHE=${KMEM_IMAGE_CACHE:-/var/cache/kmem-exporter}
TARBALL="$CACHE/debian-$SUITE-python3.tar"

log() { echo "local-base: $*" >&2; }

for tool in debootstrap buildah; do
    command -v "$tool" >/dev/null || { log "$tool is not installed (apt-get install $tool)"; exit 1; }
done

if buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists"
    exit 0
fi

# The mirror apt uses here for $SUITE main, as apt itself resolves its sources.
mirror() {
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' \
        | awk -v suite="$SUITE" '$2 == suite && $3 == "main" { print $1; exit }'
}

if [ ! -s "$TARBALL" ]; then
    MIRROR=$(mirror)
    if [ -z "$MIRROR" ]; then  # refresh apt once in case its lists are missing
        apt-get update -qq >&2
        MIRROR=$(mirror)
    fi
    if [ -z "$MIRROR" ]; then
        log "no apt source for $SUITE main in /etc/apt/sources.list*"
        exit 1
    fi
    mkdir -p "$CACHE"
    ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$ROOTFS"' EXIT
    log "debootstrap $SUITE from $MIRROR into $ROOTFS"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
        chroot "$ROOTFS" update-ca-certificates >&2
    fi
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$ROOTFS"
    trap - EXIT
fi

log "importing $TARBALL as $IMAGE"
container=$(buildah from scratch)
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
buildah add "$container" "$TARBALL" / >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /usr/bin/python3 "$container"
buildah commit --quiet "$container" "$IMAGE" >/dev/null
log "built $IMAGE"
