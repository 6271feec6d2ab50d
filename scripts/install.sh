#!/usr/bin/env bash
# Installs l4lb on a host: the built project under $PREFIX (default
# /opt/l4lb), /usr/local/bin/l4lb, a system user "l4lb", /etc/l4lb/lb.toml
# from configs/lb.example.toml when absent, and the systemd unit.
# Idempotent. Run from a checkout after `npm ci`.
#
#   scripts/install.sh [--prefix /opt/l4lb] [--dry-run]
set -euo pipefail

prefix=/opt/l4lb
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 64 ;;
  esac
done

src="$(cd "$(dirname "$0")/.." && pwd)"
run() { if [ "$dry" = 1 ]; then echo "+ $*"; else "$@"; fi; }

[ -f "$src/dist/src/cli.js" ] || { echo "install.sh: build first (npm ci)" >&2; exit 1; }
[ "$dry" = 1 ] || [ "$(id -u)" = 0 ] || { echo "install.sh: run as root (or with --dry-run)" >&2; exit 1; }

# Production dependencies only, next to the built code.
run mkdir -p "$prefix"
run cp -R "$src/dist" "$src/package.json" "$src/package-lock.json" "$src/README.md" "$src/LICENSE" "$src/configs" "$prefix/"
if [ -f "$src/native/build/Release/l4lb_splice.node" ]; then
  run mkdir -p "$prefix/native/build/Release"
  run cp "$src/native/build/Release/l4lb_splice.node" "$prefix/native/build/Release/"
fi
run sh -c "cd '$prefix' && npm ci --omit=dev --ignore-scripts --no-audit --no-fund"
run ln -sfn "$prefix/dist/src/cli.js" /usr/local/bin/l4lb
run chmod 755 "$prefix/dist/src/cli.js"

if ! id l4lb >/dev/null 2>&1; then
  run useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin l4lb
fi

run mkdir -p /etc/l4lb
if [ ! -f /etc/l4lb/lb.toml ]; then
  run install -m 0640 -g l4lb "$src/configs/lb.example.toml" /etc/l4lb/lb.toml
fi

run install -m 0644 "$src/configs/l4lb.service" /etc/systemd/system/l4lb.service
if command -v systemctl >/dev/null 2>&1; then
  run systemctl daemon-reload
fi
echo "l4lb installed in $prefix. Edit /etc/l4lb/lb.toml, then: systemctl enable --now l4lb"
