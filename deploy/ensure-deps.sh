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
# the tests run `vagrant validate` on e2e/vagrant/Vagrantfile (no VM is started), `systemd-analyze verify` on
# the unit and the docker drop-in, `promtool` on the alert rules (Debian ships it in the prometheus package),
# and read systemd notifications with a python3 listener
if [ "${1:-test}" = test ]; then
  package_of[vagrant]=vagrant
  package_of[systemd-analyze]=systemd
  package_of[promtool]=prometheus
  package_of[python3]=python3
fi
missing=()
for command in "${!package_of[@]}"; do
  command -v "$command" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]}")
done
[ -f /usr/include/pcap/pcap.h ] || [ -f /usr/include/pcap.h ] || missing+=(libpcap-dev)
# docker hosts (the docker scenarios, npm run demo -- --docker): dockerd under systemd (Debian's docker.io, its
# containerd and runc), and busybox-static, the one binary of the containers' image
if [ "${1:-test}" != bench ]; then
  [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || missing+=(docker.io)
  [ -x /lib/systemd/systemd ] || missing+=(systemd)
  dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "weft: missing system packages (${missing[*]}); run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "weft: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Debian starts a package's daemons on installation; docker.io's dockerd would give this machine a docker0 with
  # 172.17.0.1/16 (the lab runs dockerd of its own on each lab host), prometheus its server (only promtool is
  # wanted). policy-rc.d is Debian's way to say "not now".
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# weft: no daemon starts while deploy/ensure-deps.sh installs packages\nexit 101\n' > "$policy"
    chmod 755 "$policy"
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy" ]; then rm -f "$policy"; trap - EXIT; fi
  # nor at the next boot of a systemd host
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi

# npm ci when node_modules is absent or older than the lockfile (a fresh clone, or a changed dependency).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "weft: installing npm dependencies" >&2
  npm ci --no-audit --no-fund >&2
fi
