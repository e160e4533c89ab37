#!/usr/bin/env bash
# Installs a built weft (npm ci && npm run build) with its systemd unit:
#
#   <prefix>/lib/weft/                 dist/bin (the bundled programs), package.json,
#                                      weft's addon and the production node_modules (for the native ones)
#   <prefix>/bin/weftd, weftctl        wrappers that run them with node
#   <prefix>/bin/weft-docker-opts      subnet.env → dockerd --bip/--mtu (deploy/docker/weft-docker-opts.sh)
#   /etc/systemd/system/weftd.service  the unit (deploy/weftd.service)
#   /etc/weft/weftd.env                the settings (deploy/weftd.env), only when there is none yet;
#                                      weftd.env.example is always refreshed
#   <prefix>/share/weft/               CNI conflist, docker drop-in, Kubernetes DaemonSet examples, and the
#                                      Grafana dashboard and Prometheus alert rules (monitoring/)
#   <prefix>/share/doc/weft/           README and docs
#
# Re-running it upgrades in place: the new tree replaces the old one at the end, the settings are kept.
# With --destdir (or DESTDIR) everything goes under that directory and systemctl is not called, for
# packaging and tests.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: deploy/install.sh [--prefix DIR] [--destdir DIR] [--enable] [--start] [--source DIR]

  --prefix DIR    installation prefix (default /usr/local)
  --destdir DIR   stage the install under DIR (default \$DESTDIR, else /); systemctl is then not called
  --enable        systemctl enable weftd (start at boot)
  --start         systemctl restart weftd now (starts it, or restarts it onto the new version)
  --source DIR    the built weft checkout (default: the one this script is in)

Example: sudo deploy/install.sh --enable --start
USAGE
}

prefix=/usr/local
destdir=${DESTDIR:-}
enable=false
start=false
source_dir=$(cd "$(dirname "$0")/.." && pwd)

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --source) source_dir=${2:?--source needs a directory}; shift 2 ;;
    --source=*) source_dir=${1#*=}; shift ;;
    --enable) enable=true; shift ;;
    --start) start=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

case $prefix in /*) ;; *) fail "--prefix must be an absolute path, not $prefix" ;; esac
if [ -n "$destdir" ]; then
  mkdir -p "$destdir"
  destdir=$(cd "$destdir" && pwd)
fi
for built in dist/bin/weftd.js dist/bin/weftctl.js node_modules package.json package-lock.json; do
  [ -e "$source_dir/$built" ] || fail "$source_dir/$built is missing: build weft first (npm ci && npm run build)"
done
node_bin=$(command -v node || true)
if [ -z "$destdir" ]; then
  [ -n "$node_bin" ] || fail "node is not installed: weft needs Node.js 20 or newer"
  node_major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
  [ "$node_major" -ge 20 ] || fail "node $("$node_bin" --version) is too old: weft needs Node.js 20 or newer"
fi

libdir=$prefix/lib/weft
bindir=$prefix/bin
sharedir=$prefix/share/weft
docdir=$prefix/share/doc/weft
root=$destdir

# the new tree is staged next to the old one, then swapped in
stage=$root$libdir.new
rm -rf "$stage"
mkdir -p "$stage/dist"
cp -a "$source_dir/package.json" "$source_dir/package-lock.json" "$stage/"
# the programs as npm run build bundles them
cp -a "$source_dir/dist/bin" "$stage/dist/"
# version, commit and source fingerprint of the build (weft_build_info; the Vagrant driver compares them)
if [ -f "$source_dir/dist/build-info.json" ]; then cp -a "$source_dir/dist/build-info.json" "$stage/dist/"; fi
# weft's addon (npm run build makes it when a compiler is there; without it the userspace path uses dgram and the kernel monitor a child process)
if [ -f "$source_dir/build/Release/weft_native.node" ]; then
  mkdir -p "$stage/build/Release"
  cp -a "$source_dir/build/Release/weft_native.node" "$stage/build/Release/"
fi
cp -a "$source_dir/node_modules" "$stage/"
if command -v npm >/dev/null 2>&1; then
  (cd "$stage" && npm prune --omit=dev --offline --no-audit --no-fund >/dev/null 2>&1) \
    || echo "install.sh: npm prune failed; keeping every dependency (dev ones too)" >&2
fi
if [ -e "$root$libdir" ]; then
  rm -rf "$root$libdir.old"
  mv "$root$libdir" "$root$libdir.old"
fi
mv "$stage" "$root$libdir"
rm -rf "$root$libdir.old"

install -d "$root$bindir"
for tool in weftd weftctl; do
  cat > "$root$bindir/$tool.tmp" <<WRAPPER
#!/bin/sh
# installed by weft's deploy/install.sh
exec node "$libdir/dist/bin/$tool.js" "\$@"
WRAPPER
  chmod 0755 "$root$bindir/$tool.tmp"
  mv -f "$root$bindir/$tool.tmp" "$root$bindir/$tool"
done
install -m 0755 "$source_dir/deploy/docker/weft-docker-opts.sh" "$root$bindir/weft-docker-opts"

substitute() {
  sed -e "s|@BINDIR@|$bindir|g" -e "s|@DOCDIR@|$docdir|g" "$1"
}
install -d "$root/etc/systemd/system"
substitute "$source_dir/deploy/weftd.service" > "$root/etc/systemd/system/weftd.service"
chmod 0644 "$root/etc/systemd/system/weftd.service"

install -d -m 0755 "$root/etc/weft"
install -m 0644 "$source_dir/deploy/weftd.env" "$root/etc/weft/weftd.env.example"
if [ -e "$root/etc/weft/weftd.env" ]; then
  kept="kept /etc/weft/weftd.env (compare with weftd.env.example after an upgrade)"
else
  # it may hold etcd credentials
  install -m 0600 "$source_dir/deploy/weftd.env" "$root/etc/weft/weftd.env"
  kept="wrote /etc/weft/weftd.env: set WEFTD_ETCD_ENDPOINTS (and WEFTD_IFACE) there"
fi

install -d "$root$sharedir/cni" "$root$sharedir/docker" "$root$sharedir/kubernetes" "$root$sharedir/monitoring" "$root$docdir"
install -m 0644 "$source_dir/deploy/cni/10-weft.conflist" "$root$sharedir/cni/"
substitute "$source_dir/deploy/docker/docker-weft.conf" > "$root$sharedir/docker/docker-weft.conf"
install -m 0644 "$source_dir"/deploy/kubernetes/*.yaml "$root$sharedir/kubernetes/"
install -m 0644 "$source_dir/deploy/monitoring/weft-dashboard.json" "$source_dir/deploy/monitoring/weft-alerts.yml" "$root$sharedir/monitoring/"
install -m 0644 "$source_dir/README.md" "$root$docdir/"
if [ -d "$source_dir/docs" ]; then
  find "$source_dir/docs" -maxdepth 1 -name '*.md' -exec install -m 0644 {} "$root$docdir/" \;
fi

echo "installed weft $(sed -n 's/^ *"version": *"\(.*\)",*$/\1/p' "$source_dir/package.json" | head -n 1) into ${destdir:-/}: $bindir/weftd, $bindir/weftctl, $libdir"
echo "$kept"

if [ -n "$destdir" ]; then
  exit 0
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  if [ "$enable" = true ]; then systemctl enable weftd.service; fi
  if [ "$start" = true ]; then
    systemctl restart weftd.service
    echo "weftd (re)started: systemctl status weftd; weftctl doctor"
  else
    echo "start it with: systemctl restart weftd"
  fi
elif [ "$enable" = true ] || [ "$start" = true ]; then
  fail "systemd is not running here: start weftd yourself ($bindir/weftd)"
fi
