#!/usr/bin/env bash
# Build the local base image that stands in for python:3.11-slim where no image
# can be pulled: Debian bookworm from Debian's packages (debootstrap), imported
# with `docker import`. Cached: does nothing when the image already exists.
#   usage: swarm/base-image.sh [IMAGE]   (default ems-test/base:bookworm)
set -euo pipefail

IMAGE=${1:-ems-test/base:bookworm}
MIRROR=${EMS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,curl,procps

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists (cached)"
  exit 0
fi

rootfs=$(mktemp -d /tmp/ems-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap bookworm into $rootfs"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >/tmp/ems-debootstrap.log 2>&1 \
  || { tail -30 /tmp/ems-debootstrap.log >&2; exit 1; }

# Certificate authorities this machine trusts for its way out (an egress proxy
# may re-sign TLS): builds inside the image reach PyPI and npm the same way.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
SOURCES
# Keep images small, as the slim images do.
cat >"$rootfs/etc/apt/apt.conf.d/90ems-slim" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log

echo "==> docker import $IMAGE"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" >/dev/null
echo "base image $IMAGE built"
