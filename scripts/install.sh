#!/usr/bin/env bash
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [options]

Installs l4lb from this checkout (after `npm ci`) on this host, or into a
staging root for an image or a package. Idempotent; never overwrites
/etc/l4lb/lb.toml. See docs/install.md.

Options:
  --prefix DIR    where the program goes (default /opt/l4lb)
  --destdir DIR   staging root: every file is written under DIR, no user is
                  created and systemd is not touched (default: $DESTDIR)
  --bindir DIR    where the `l4lb` command goes (default /usr/local/bin)
  --unitdir DIR   where l4lb.service and l4lb.socket go
                  (default /etc/systemd/system)
  --docdir DIR    where README.md and docs/ go (default: the prefix);
                  the unit's Documentation= points there
  --node PATH     the node binary the unit and the command run
                  (default: `command -v node`, as an absolute path)
  --dry-run       print what would be done, change nothing
  -h, --help      print this help and exit

Installs: the built program (dist/src, the splice addon when built,
production node_modules) under the prefix; the `l4lb` command; the system
user l4lb; /etc/l4lb/lb.toml, a loopback-only starter (only when absent),
and /etc/l4lb/lb.example.toml, every key annotated; l4lb.service and
l4lb.socket, neither enabled. With systemd running it runs
`systemctl daemon-reload`; otherwise it says what to run later.
EOF
}

prefix=/opt/l4lb
destdir="${DESTDIR:-}"
bindir=/usr/local/bin
unitdir=/etc/systemd/system
docdir=
node=
dry=0
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "install.sh: $1 needs a value" >&2; exit 64; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) need_arg "$@"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) need_arg "$@"; destdir="$2"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --bindir) need_arg "$@"; bindir="$2"; shift 2 ;;
    --bindir=*) bindir="${1#*=}"; shift ;;
    --unitdir) need_arg "$@"; unitdir="$2"; shift 2 ;;
    --unitdir=*) unitdir="${1#*=}"; shift ;;
    --docdir) need_arg "$@"; docdir="$2"; shift 2 ;;
    --docdir=*) docdir="${1#*=}"; shift ;;
    --node) need_arg "$@"; node="$2"; shift 2 ;;
    --node=*) node="${1#*=}"; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -n "$docdir" ] || docdir="$prefix"

die() { echo "install.sh: $*" >&2; exit 1; }
# Paths end up in systemd Exec lines and sed expressions: keep them plain.
for pair in "prefix:$prefix" "bindir:$bindir" "unitdir:$unitdir" "docdir:$docdir"; do
  v="${pair#*:}"
  [[ "$v" =~ ^/[A-Za-z0-9._/+@-]*$ ]] || { echo "install.sh: --${pair%%:*} must be an absolute path of letters, digits and ._/+@- (got '$v')" >&2; exit 64; }
done
if [ -n "$destdir" ]; then
  case "$destdir" in /*) ;; *) destdir="$(pwd)/$destdir" ;; esac
  destdir="${destdir%/}"
fi

src="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$src/dist/src/cli.js" ] || die "build first: run \`npm ci\` (or \`npm run build\`) in $src"

if [ -z "$node" ]; then
  node="$(command -v node || true)"
  [ -n "$node" ] || die "node not found on PATH; pass --node /path/to/node (Node.js >= 20)"
fi
case "$node" in /*) ;; *) node="$(cd "$(dirname "$node")" && pwd)/$(basename "$node")" ;; esac
[[ "$node" =~ ^/[A-Za-z0-9._/+@-]*$ ]] || { echo "install.sh: --node must be an absolute path of letters, digits and ._/+@- (got '$node')" >&2; exit 64; }
if [ -x "$node" ]; then
  major="$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  [ "$major" -ge 20 ] 2>/dev/null || die "$node is Node.js $("$node" --version 2>/dev/null || echo '?'); l4lb needs >= 20"
elif [ -z "$destdir" ]; then
  die "$node is not an executable file"
else
  echo "install.sh: note: $node does not exist here; it must exist on the target"
fi
case "$node" in
  /root/*|/home/*|/run/user/*)
    echo "install.sh: warning: $node is under a home directory: the unit's ProtectHome=yes hides it from the service" >&2
    echo "install.sh: warning: install Node.js outside home directories (e.g. /usr/local or /opt) and pass --node" >&2 ;;
esac

[ "$dry" = 1 ] || [ -n "$destdir" ] || [ "$(id -u)" = 0 ] || die "run as root (or with --destdir, or --dry-run)"

# The node and npm that run here (the target's node may not exist on a build host).
host_node="$node"
[ -x "$host_node" ] || host_node="$(command -v node || true)"
[ -n "$host_node" ] || die "node not found on PATH: it is needed to install"
npm="$(dirname "$host_node")/npm"
[ -x "$npm" ] || npm="$(command -v npm || true)"
[ -n "$npm" ] || die "npm not found (next to $host_node or on PATH): it installs the production dependencies"

D="$destdir"
run() { if [ "$dry" = 1 ]; then echo "+ $*"; else "$@"; fi; }
# write FILE MODE: stdin to FILE (replaced atomically).
write() {
  if [ "$dry" = 1 ]; then echo "+ write $1 (mode $2)"; cat >/dev/null; return; fi
  local tmp="$1.tmp.$$"
  cat >"$tmp" && chmod "$2" "$tmp" && mv -f "$tmp" "$1"
}

addon="native/build/Release/l4lb_splice.node"

# 1. The program: built code, the addon, what rebuilds the addon, docs.
# Built complete in a sibling directory, then swapped in for the previous
# one: a failed step leaves the installed version as it was, and a running
# l4lb never finds files missing.
if [ -e "$D$prefix" ] && [ -n "$(ls -A "$D$prefix" 2>/dev/null)" ] && [ ! -f "$D$prefix/dist/src/cli.js" ]; then
  die "$D$prefix exists and is not an l4lb installation: choose another --prefix (it is replaced on every run)"
fi
new="$D$prefix.new.$$"
old="$D$prefix.old.$$"
[ "$dry" = 1 ] || trap 'rm -rf "$new"' EXIT
run mkdir -p "$(dirname "$D$prefix")" "$D$docdir" "$D$bindir" "$D$unitdir" "$D/etc/l4lb"
run mkdir -p "$new/dist" "$new/native/build/Release" "$new/scripts"
run cp -R "$src/dist/src" "$new/dist/src"
run cp "$src/package.json" "$src/package-lock.json" "$new/"
run cp -R "$src/configs" "$new/configs"
run cp "$src/scripts/build-native.js" "$new/scripts/"
run cp -R "$src/native/binding.gyp" "$src/native/src" "$new/native/"
if [ "$docdir" = "$prefix" ]; then
  run cp -R "$src/README.md" "$src/LICENSE" "$src/docs" "$new/"
else
  run rm -rf "$D$docdir/docs"
  run cp -R "$src/README.md" "$src/LICENSE" "$src/docs" "$D$docdir/"
fi
if [ -f "$src/$addon" ]; then
  run cp "$src/$addon" "$new/$addon"
fi
run chmod 755 "$new/dist/src/cli.js"
# Production dependencies only; from npm's cache when `npm ci` ran here.
run sh -c "cd '$new' && '$npm' ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error"
if [ ! -f "$src/$addon" ]; then
  # Not built in the checkout: try in the installed tree (never fails).
  run "$host_node" "$new/scripts/build-native.js"
fi
if [ -e "$D$prefix" ]; then run mv "$D$prefix" "$old"; fi
run mv "$new" "$D$prefix"
run rm -rf "$old"

# 2. The command: node's absolute path, so it works without node on PATH.
write "$D$bindir/l4lb.new" 755 <<EOF
#!/bin/sh
# l4lb, installed by scripts/install.sh from $prefix
exec $node $prefix/dist/src/cli.js "\$@"
EOF
run mv -f "$D$bindir/l4lb.new" "$D$bindir/l4lb"

# 3. The user the service runs as (on this host only, not in a staging root).
if [ -z "$D" ] && ! id l4lb >/dev/null 2>&1; then
  run useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin l4lb
fi

# 4. Configuration: a loopback-only starter, never over an existing file.
if [ -e "$D/etc/l4lb/lb.toml" ]; then
  echo "install.sh: keeping the existing /etc/l4lb/lb.toml"
elif [ -z "$D" ]; then
  run install -m 0640 -o root -g l4lb "$src/configs/lb.starter.toml" /etc/l4lb/lb.toml
else
  run install -m 0640 "$src/configs/lb.starter.toml" "$D/etc/l4lb/lb.toml"
fi
run install -m 0644 "$src/configs/lb.example.toml" "$D/etc/l4lb/lb.example.toml"

# 5. systemd units from the templates in configs/: /usr/local/bin/l4lb in
# Exec lines becomes node's absolute path and the installed cli.js.
exe="$node $prefix/dist/src/cli.js"
if [ "$dry" = 1 ]; then
  echo "+ write $D$unitdir/l4lb.service (Exec: $exe ...; Documentation=file://$docdir/README.md)"
else
  unit="$(sed -e "/^Exec/ s|/usr/local/bin/l4lb|$exe|g" \
              -e "s|^Documentation=file://.*/README.md|Documentation=file://$docdir/README.md|" \
              "$src/configs/l4lb.service")"
  grep -q "^ExecStart=$exe " <<<"$unit" || die "configs/l4lb.service: ExecStart does not run /usr/local/bin/l4lb; cannot write the unit"
  write "$D$unitdir/l4lb.service" 644 <<<"$unit"
fi
run install -m 0644 "$src/configs/l4lb.socket" "$D$unitdir/l4lb.socket"

# 6. Tell systemd, when it runs here; otherwise say what to do later.
[ "$dry" = 0 ] || { echo "Dry run: nothing was changed."; exit 0; }
echo "l4lb installed in $D$prefix ($node $("$host_node" --version 2>/dev/null), splice addon: $([ -f "$D$prefix/$addon" ] || [ "$dry" = 1 ] && echo built || echo 'not built, JavaScript pump'))."
if [ -n "$D" ]; then
  cat <<EOF
Staged under $D. On the target host, as root:
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin l4lb
  chgrp l4lb /etc/l4lb/lb.toml
  systemctl daemon-reload     # when systemd is running
Then edit /etc/l4lb/lb.toml and: systemctl enable --now l4lb
EOF
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  run systemctl daemon-reload
  if systemctl is-active --quiet l4lb.service 2>/dev/null; then
    echo "l4lb.service is running the previous version: systemctl restart l4lb (drains open connections)"
  fi
  echo "Next: edit /etc/l4lb/lb.toml (the starter listens on loopback only), check it with"
  echo "\`l4lb --config /etc/l4lb/lb.toml --check\`, then: systemctl enable --now l4lb"
else
  echo "Next: edit /etc/l4lb/lb.toml (the starter listens on loopback only), check it with"
  echo "\`l4lb --config /etc/l4lb/lb.toml --check\`."
  echo "systemd is not running here, so systemctl was not called. Once it runs (e.g. when"
  echo "this image boots): systemctl daemon-reload && systemctl enable --now l4lb"
  echo "Without systemd: l4lb --config /etc/l4lb/lb.toml   (foreground, JSON logs on stdout)"
fi
