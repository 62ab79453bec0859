#!/usr/bin/env bash
# Make sure a Docker engine answers (idempotent): nothing to do when `docker info` works; otherwise
# install Debian's docker.io when dockerd is missing (as root with apt-get), then start dockerd on
# the default socket and data root (/var/lib/docker: the image store stays warm across clones).
#
# On hosts whose capability bounding set lacks a capability Docker grants privileged containers
# (kind's nodes; e.g. CAP_SYS_RESOURCE), dockerd gets hack/lib/runc-capfix.py as its default
# runtime, which drops those capabilities from the spec before calling runc. Other hosts: plain runc.
#
#   hack/docker.sh            ensure the engine answers
#   hack/docker.sh --stop     stop a dockerd this script started
# Log: /var/log/alertfilter-dockerd.log
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pidfile=/var/run/alertfilter-dockerd.pid
log=/var/log/alertfilter-dockerd.log

if [ "${1:-}" = --stop ]; then
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then kill "$(cat "$pidfile")"; fi
  exit 0
fi

if docker info >/dev/null 2>&1; then exit 0; fi

if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "docker.sh: no Docker engine answers and dockerd is not installed (install Docker first)" >&2; exit 1
  fi
  echo ">> installing Debian's docker.io (first time only)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
fi
[ "$(id -u)" = 0 ] || { echo "docker.sh: starting dockerd needs root" >&2; exit 1; }

args=()
# bit 24 of CapBnd is CAP_SYS_RESOURCE; any missing bit below 41 makes privileged containers fail
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if [ $(( 16#$capbnd & 16#1ffffffffff )) != $(( 16#1ffffffffff )) ]; then
  wrapper=/usr/local/libexec/alertfilter/runc-capfix
  mkdir -p "$(dirname "$wrapper")"
  # a machine-wide copy: dockerd outlives this checkout
  install -m 0755 "$root/hack/lib/runc-capfix.py" "$wrapper"
  args+=(--add-runtime "capfix=$wrapper" --default-runtime capfix)
  echo ">> capability bounding set $capbnd lacks capabilities: dockerd runs runc through $wrapper" >&2
fi
echo ">> starting dockerd (log $log)" >&2
setsid nohup dockerd "${args[@]}" --pidfile "$pidfile" >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "docker.sh: dockerd did not answer in 30 s; end of $log:" >&2
tail -20 "$log" >&2
exit 1
