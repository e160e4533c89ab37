#!/usr/bin/env bash
# Installs what weft's tests, demo and benchmarks need on a Debian machine, skipping what is already there.
# Usage: deploy/ensure-deps.sh [test|demo|bench]   (run as root; apt-get is used only when something is missing)
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A package_of=(
  [etcd]=etcd-server [etcdctl]=etcd-client [ip]=iproute2 [iptables]=iptables [ip6tables]=iptables
  [iperf3]=iperf3 [ping]=iputils-ping [tcpdump]=tcpdump [sysctl]=procps [openssl]=openssl [nft]=nftables
  [wireguard-go]=wireguard-go [wg]=wireguard-tools
)
# the tests run `vagrant validate` on e2e/vagrant/Vagrantfile (no VM is started)
if [ "${1:-test}" = test ]; then package_of[vagrant]=vagrant; fi
missing=()
for command in "${!package_of[@]}"; do
  command -v "$command" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]}")
done
[ -f /usr/include/pcap/pcap.h ] || [ -f /usr/include/pcap.h ] || missing+=(libpcap-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "weft: missing system packages (${missing[*]}); run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "weft: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci when node_modules is absent or older than the lockfile (a fresh clone, or a changed dependency).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "weft: installing npm dependencies" >&2
  npm ci --no-audit --no-fund >&2
fi
