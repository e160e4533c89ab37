#!/bin/bash
# Provisions one VM of e2e/vagrant/Vagrantfile (as root): Node.js, etcd (on the etcd VM) and weft, built in
# the VM from the checkout at /vagrant and installed with deploy/install.sh; then starts weftd with systemd.
# Re-running it (vagrant provision) rebuilds and reinstalls weft from the current checkout.
#
# Environment (set by the Vagrantfile): WEFT_IP (this VM's private address), WEFT_ETCD_IP, WEFT_RUNS_ETCD
# (true on the etcd VM), WEFT_NODE_VERSION (major version, default 20), WEFT_REVISION (the checkout's git
# commit, for weft_build_info: the VM's copy has no .git).
set -euo pipefail
: "${WEFT_IP:?} ${WEFT_ETCD_IP:?}"
runs_etcd=${WEFT_RUNS_ETCD:-false}
node_major=${WEFT_NODE_VERSION:-20}
export DEBIAN_FRONTEND=noninteractive

# iperf3: the userspace scenarios measure TCP through the overlay
packages=(ca-certificates curl xz-utils rsync python3 make g++ libpcap-dev iproute2 iptables nftables iputils-ping tcpdump procps iperf3 etcd-client)
if [ "$runs_etcd" = true ]; then packages+=(etcd-server); fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# Node.js from the official release tarball, checked against its published SHA-256
if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt "$node_major" ]; then
  case $(uname -m) in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) echo "no Node.js build for $(uname -m)" >&2; exit 1 ;; esac
  base=https://nodejs.org/dist/latest-v${node_major}.x
  sums=$(curl -fsSL "$base/SHASUMS256.txt")
  tarball=$(printf '%s\n' "$sums" | awk -v arch="$arch" '$2 ~ ("-linux-" arch "\\.tar\\.xz$") { print $2 }')
  [ -n "$tarball" ] || { echo "no linux-$arch tarball in $base/SHASUMS256.txt" >&2; exit 1; }
  curl -fsSL -o "/tmp/$tarball" "$base/$tarball"
  (cd /tmp && printf '%s\n' "$sums" | grep " $tarball\$" | sha256sum -c -)
  tar -xJf "/tmp/$tarball" -C /usr/local --strip-components=1 --exclude='*/CHANGELOG.md' --exclude='*/README.md' --exclude='*/LICENSE'
  rm -f "/tmp/$tarball"
fi
node --version

if [ "$runs_etcd" = true ]; then
  # Debian's etcd listens on localhost only: add the private address
  cat > /etc/default/etcd <<ETCD
ETCD_NAME=weft-e2e
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_LISTEN_CLIENT_URLS=http://${WEFT_ETCD_IP}:2379,http://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=http://${WEFT_ETCD_IP}:2379
ETCD
  systemctl enable etcd >/dev/null 2>&1
  systemctl restart etcd
  for _ in $(seq 60); do
    ETCDCTL_API=3 etcdctl --endpoints="http://${WEFT_ETCD_IP}:2379" endpoint health >/dev/null 2>&1 && break
    sleep 1
  done
  # the network config weftd waits for (the scenario suite replaces it while it runs)
  if [ -z "$(ETCDCTL_API=3 etcdctl --endpoints="http://${WEFT_ETCD_IP}:2379" get --print-value-only /coreos.com/network/config)" ]; then
    ETCDCTL_API=3 etcdctl --endpoints="http://${WEFT_ETCD_IP}:2379" put /coreos.com/network/config \
      '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}' >/dev/null
  fi
fi

# build weft in the VM (native modules for this VM) from the synced checkout, then install it
install -d /opt/weft-src
rsync -a --delete --exclude node_modules --exclude dist --exclude .git --exclude e2e/vagrant/.vagrant /vagrant/ /opt/weft-src/
cd /opt/weft-src
npm ci --no-audit --no-fund
npm run build

# weftd's settings: this VM's private interface, the cluster's etcd, the health port the suite uses
install -d -m 0755 /etc/weft
cat > /etc/weft/weftd.env <<ENV
# written by e2e/vagrant/provision.sh
WEFTD_ETCD_ENDPOINTS=http://${WEFT_ETCD_IP}:2379
WEFTD_IFACE=${WEFT_IP}
WEFTD_HEALTHZ_PORT=9910
ENV
chmod 0600 /etc/weft/weftd.env
deploy/install.sh --enable --start
