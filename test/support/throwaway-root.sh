#!/usr/bin/env bash
# throwaway-root.sh [--bind DIR] BASE COMMAND...: runs COMMAND with
# $ROOT=BASE/root, a copy-on-write view of this system (overlayfs over /usr,
# /etc, /var, /root, /opt and /home, /bin etc. as on the host, /dev and /proc bound, an
# empty /run so systemd looks absent, DIR bound read-only at /src), in a
# private mount namespace. Every write lands in BASE/upper/* or BASE/root,
# which outlive the namespace: a second call with the same BASE sees the
# first one's changes. The real root is never written; the mounts vanish
# when COMMAND exits (COMMAND is exec'd: signals reach it). Needs root.
set -euo pipefail
bind=
if [ "${1:-}" = --bind ]; then bind="$(cd "$2" && pwd)"; shift 2; fi
[ $# -ge 2 ] || { echo "usage: throwaway-root.sh [--bind DIR] BASE COMMAND..." >&2; exit 64; }
base="$(cd "$1" && pwd)"; shift
if [ "${L4LB_THROWAWAY_NS:-}" != "$base" ]; then
  exec env L4LB_THROWAWAY_NS="$base" unshare --mount --propagation private bash "$0" ${bind:+--bind "$bind"} "$base" "$@"
fi
root="$base/root"
mkdir -p "$root"
for d in usr etc var root opt home; do
  [ -d "/$d" ] || continue
  mkdir -p "$base/upper/$d" "$base/work/$d" "$root/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$base/upper/$d,workdir=$base/work/$d" "$root/$d"
done
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then
    ln -sfn "$(readlink "/$d")" "$root/$d"
  elif [ -d "/$d" ]; then
    mkdir -p "$base/upper/$d" "$base/work/$d" "$root/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$base/upper/$d,workdir=$base/work/$d" "$root/$d"
  fi
done
mkdir -p "$root/dev" "$root/proc" "$root/run" "$root/tmp"
chmod 1777 "$root/tmp"
mount --rbind /dev "$root/dev"
mount --rbind /proc "$root/proc"
if [ -n "$bind" ]; then
  mkdir -p "$root/src"
  mount --bind "$bind" "$root/src"
  mount -o remount,bind,ro "$root/src"
fi
export ROOT="$root"
exec "$@"
