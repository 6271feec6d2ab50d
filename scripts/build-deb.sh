#!/usr/bin/env bash
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/build-deb.sh [--out DIR] [--compress xz|gzip|zstd|none]

Builds l4lb_<version>_<arch>.deb from this checkout (after `npm ci`, which
builds dist/ and the splice addon) with dpkg-deb, for the architecture of
this host (the addon is compiled here). See docs/install.md.

Options:
  --out DIR    where the .deb is written (default: the current directory)
  --compress T dpkg-deb's compression (default xz; gzip is ~7x faster to build)
  -h, --help   print this help and exit

The package: /usr/lib/l4lb (program, addon, production node_modules),
/usr/bin/l4lb, /lib/systemd/system/l4lb.{service,socket} (not enabled),
/etc/l4lb/lb.toml (loopback-only starter) and lb.example.toml as
conffiles, docs in /usr/share/doc/l4lb; the system user l4lb is created
at install and removed at purge. Depends: nodejs (>= 20).
EOF
}

out="$(pwd)"
compress=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a value" >&2; exit 64; }; out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --compress) [ $# -ge 2 ] || { echo "build-deb.sh: --compress needs a value" >&2; exit 64; }; compress="$2"; shift 2 ;;
    --compress=*) compress="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-deb.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

die() { echo "build-deb.sh: $*" >&2; exit 1; }
src="$(cd "$(dirname "$0")/.." && pwd)"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian/Ubuntu: it is part of dpkg)"
command -v node >/dev/null 2>&1 || die "node not found on PATH"
[ -f "$src/dist/src/cli.js" ] || die "build first: run \`npm ci\` in $src"
addon="native/build/Release/l4lb_splice.node"
if [ ! -f "$src/$addon" ]; then
  node "$src/scripts/build-native.js"
  [ -f "$src/$addon" ] || die "the package ships the splice addon and it did not build here (see above)"
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

version="$(node -p "require('$src/package.json').version")"
arch="$(dpkg --print-architecture)"
deb="$out/l4lb_${version}_${arch}.deb"

stage="$(mktemp -d "${TMPDIR:-/tmp}/l4lb-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

# The tree: install.sh into a staging root, with Debian's paths. The
# target's node is /usr/bin/node (the nodejs package).
"$src/scripts/install.sh" --destdir "$root" --prefix /usr/lib/l4lb --bindir /usr/bin \
  --unitdir /lib/systemd/system --docdir /usr/share/doc/l4lb --node /usr/bin/node >"$stage/install.log" \
  || { cat "$stage/install.log" >&2; die "install.sh failed"; }
doc="$root/usr/share/doc/l4lb"
mv "$doc/LICENSE" "$doc/copyright"
find "$root" -type d -exec chmod 0755 {} +

# Shared libraries the addon links (libc6, libstdc++6, ...), with versions.
shlibs="libc6, libstdc++6"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  mkdir -p "$stage/shl/debian"
  printf 'Source: l4lb\n\nPackage: l4lb\nArchitecture: any\n' >"$stage/shl/debian/control"
  if line="$(cd "$stage/shl" && dpkg-shlibdeps -O -e "$root/usr/lib/l4lb/$addon" 2>/dev/null)"; then
    shlibs="${line#shlibs:Depends=}"
  fi
fi

mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<EOF
Package: l4lb
Version: $version
Architecture: $arch
Maintainer: ${L4LB_DEB_MAINTAINER:-l4lb maintainers <l4lb@localhost>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: nodejs (>= 20), adduser, $shlibs
Section: net
Priority: optional
Description: small, fast, observable Layer-4 TCP/UDP load balancer
 l4lb accepts TCP connections and UDP datagrams, picks a backend
 (consistent hash, least connections, round robin, random) and moves the
 bytes without parsing them, with health checks, PROXY protocol, an admin
 API, Prometheus metrics and an optional zero-copy splice(2) pump.
 .
 The shipped /etc/l4lb/lb.toml listens on loopback only; the service is
 not enabled at install.
EOF
printf '/etc/l4lb/lb.toml\n/etc/l4lb/lb.example.toml\n' >"$root/DEBIAN/conffiles"

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd l4lb >/dev/null; then
    if command -v adduser >/dev/null 2>&1; then
      adduser --system --group --quiet --no-create-home --home /nonexistent --shell /usr/sbin/nologin l4lb
    else
      useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin l4lb
    fi
  fi
  # The config may hold the admin token: readable by root and the service.
  if ! dpkg-statoverride --list /etc/l4lb/lb.toml >/dev/null 2>&1; then
    if [ -e /etc/l4lb/lb.toml ]; then
      dpkg-statoverride --update --add root l4lb 0640 /etc/l4lb/lb.toml
    else
      dpkg-statoverride --add root l4lb 0640 /etc/l4lb/lb.toml
    fi
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade: a running l4lb is restarted on the new program (it drains).
    if [ -n "$2" ] && systemctl is-active --quiet l4lb.service; then
      systemctl restart l4lb.service || true
    fi
  fi
  if [ -z "$2" ]; then
    echo "l4lb: edit /etc/l4lb/lb.toml (it listens on loopback only), check it with"
    echo "l4lb: \`l4lb --config /etc/l4lb/lb.toml --check\`, then: systemctl enable --now l4lb"
  fi
fi
exit 0
EOF

cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop l4lb.socket l4lb.service >/dev/null 2>&1 || true
fi
exit 0
EOF

cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  dpkg-statoverride --remove /etc/l4lb/lb.toml >/dev/null 2>&1 || true
  rm -rf /etc/l4lb
  rm -f /etc/systemd/system/multi-user.target.wants/l4lb.service \
        /etc/systemd/system/sockets.target.wants/l4lb.socket
  if getent passwd l4lb >/dev/null; then
    deluser --system --quiet l4lb 2>/dev/null || userdel l4lb || true
  fi
  if getent group l4lb >/dev/null; then
    delgroup --system --quiet l4lb 2>/dev/null || groupdel l4lb || true
  fi
fi
if [ "$1" = remove ] || [ "$1" = purge ]; then
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print0 | sort -z \
  | xargs -0 md5sum | sed 's|  \./|  |' >DEBIAN/md5sums)

dpkg-deb --root-owner-group "-Z$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
