#!/usr/bin/env bash
# Installs the peers and load tools the comparison benchmark uses, from
# Debian packages: HAProxy, nginx with the stream module, wrk and iperf3.
# Needs root (apt-get). The benchmark runs whatever is installed.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "bench-peers.sh: run as root" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq haproxy nginx-light libnginx-mod-stream wrk iperf3 >/dev/null \
  || apt-get install -y -qq haproxy nginx libnginx-mod-stream wrk iperf3 >/dev/null
# Nothing is started as a service: the benchmark runs its own instances.
for s in haproxy nginx; do systemctl disable --now "$s" >/dev/null 2>&1 || service "$s" stop >/dev/null 2>&1 || true; done
for t in haproxy nginx wrk iperf3; do printf '%-8s %s\n' "$t" "$(command -v "$t" || echo missing)"; done
