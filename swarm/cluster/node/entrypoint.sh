#!/bin/sh
# Start dockerd in a cluster node container. Its API listens on the usual socket
# and on /ems-host/docker.sock, a directory the host mounts, so that the test
# drives each node with `docker -H unix://...` and no TCP port is opened.
# EMS_REGISTRY (host:port) is the test's plain-HTTP registry the node pulls from.
set -e
# AppArmor and friends look for securityfs; a restarted node finds stale pid files.
mountpoint -q /sys/kernel/security || mount -t securityfs none /sys/kernel/security || true
mountpoint -q /tmp || mount -t tmpfs none /tmp
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid /run/docker/containerd/containerd.pid
mkdir -p /ems-host
rm -f /ems-host/docker.sock
# Tasks' DNS falls back to public servers when the node's resolver is on loopback (it
# is Docker's own here): send any name not in the swarm to this node, where nothing
# answers, so no query ever leaves the test's networks.
address=$(hostname -i | awk '{print $1}')
exec dockerd --dns "$address" \
  --host unix:///var/run/docker.sock --host unix:///ems-host/docker.sock \
  --storage-driver overlay2 \
  ${EMS_REGISTRY:+--insecure-registry "$EMS_REGISTRY"} \
  "$@"
