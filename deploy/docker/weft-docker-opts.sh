#!/bin/sh
# Turns weft's subnet.env into dockerd options, as flannel's mk-docker-opts.sh does (same flags, same
# output), so that docker's bridge takes this host's overlay subnet and MTU:
#
#   DOCKER_OPT_BIP="--bip=10.5.52.1/24"
#   DOCKER_OPT_IPMASQ="--ip-masq=false"      (weftd masquerades when FLANNEL_IPMASQ=true, so docker must not)
#   DOCKER_OPT_MTU="--mtu=1450"
#   DOCKER_OPTS=" --bip=10.5.52.1/24 --ip-masq=false --mtu=1450"
#
# docker.service then reads the file (EnvironmentFile=/run/docker_opts.env) and passes $DOCKER_OPTS to
# dockerd; see deploy/docker/docker-weft.conf.
set -eu

usage() {
  cat <<USAGE
Usage: $0 [-f SUBNET-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]

Generate dockerd options from weft's (flannel's) subnet.env.

  -f  subnet.env to read (default /run/flannel/subnet.env)
  -d  file to write (default /run/docker_opts.env; - for standard output)
  -i  write each option as its own variable (DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU)
  -c  write the combined options as one variable (default when neither -i nor -c is given: both)
  -k  name of the combined variable (default DOCKER_OPTS)
  -m  leave out --ip-masq (for dockerd versions without it)

Example: $0 -d /run/docker_opts.env && systemctl restart docker
USAGE
}

subnet_env=/run/flannel/subnet.env
docker_env=/run/docker_opts.env
individual=false
combined=false
ipmasq=true
combined_key=DOCKER_OPTS

while getopts "f:d:icmk:h" option; do
  case $option in
    f) subnet_env=$OPTARG ;;
    d) docker_env=$OPTARG ;;
    i) individual=true ;;
    c) combined=true ;;
    m) ipmasq=false ;;
    k) combined_key=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -gt 0 ]; then
  echo "weft-docker-opts: unexpected argument: $1" >&2
  usage >&2
  exit 2
fi
if [ "$individual" = false ] && [ "$combined" = false ]; then
  individual=true
  combined=true
fi
case $combined_key in
  *[!A-Za-z0-9_]* | [0-9]* | '') echo "weft-docker-opts: -k $combined_key is not a variable name" >&2; exit 2 ;;
esac

if [ ! -r "$subnet_env" ]; then
  echo "weft-docker-opts: cannot read $subnet_env (is weftd running? it writes the file once it holds a lease)" >&2
  exit 1
fi

# read the variables without sourcing the file (it is written by a daemon, but still: no code execution)
value() {
  sed -n "s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}$1=//p" "$subnet_env" | tail -n 1 | sed 's/^"\(.*\)"$/\1/; s/^'"'"'\(.*\)'"'"'$/\1/'
}
FLANNEL_SUBNET=$(value FLANNEL_SUBNET)
FLANNEL_MTU=$(value FLANNEL_MTU)
FLANNEL_IPMASQ=$(value FLANNEL_IPMASQ)
FLANNEL_IPV6_SUBNET=$(value FLANNEL_IPV6_SUBNET)

case $FLANNEL_SUBNET in
  */*) ;;
  *) echo "weft-docker-opts: $subnet_env has no FLANNEL_SUBNET=<address>/<length> (found \"$FLANNEL_SUBNET\")" >&2; exit 1 ;;
esac
case $FLANNEL_MTU in
  '' | *[!0-9]*) echo "weft-docker-opts: $subnet_env has no numeric FLANNEL_MTU (found \"$FLANNEL_MTU\")" >&2; exit 1 ;;
esac

# variable name, option
options="BIP --bip=$FLANNEL_SUBNET"
if [ "$ipmasq" = true ]; then
  # weftd masquerades for the overlay when FLANNEL_IPMASQ=true: docker must then not do it as well
  case $FLANNEL_IPMASQ in
    true) options="$options
IPMASQ --ip-masq=false" ;;
    false) options="$options
IPMASQ --ip-masq=true" ;;
    *) echo "weft-docker-opts: $subnet_env has FLANNEL_IPMASQ=\"$FLANNEL_IPMASQ\"; want true or false (or give -m)" >&2; exit 1 ;;
  esac
fi
options="$options
MTU --mtu=$FLANNEL_MTU"
if [ -n "$FLANNEL_IPV6_SUBNET" ]; then
  options="$options
IPV6 --ipv6
FIXED_CIDR_V6 --fixed-cidr-v6=$FLANNEL_IPV6_SUBNET"
fi

output=$(
  printf '%s\n' "$options" | while read -r name option; do
    if [ "$individual" = true ]; then printf 'DOCKER_OPT_%s="%s"\n' "$name" "$option"; fi
  done
  if [ "$combined" = true ]; then
    all=$(printf '%s\n' "$options" | while read -r name option; do printf ' %s' "$option"; done)
    printf '%s="%s"\n' "$combined_key" "$all"
  fi
)

if [ "$docker_env" = - ]; then
  printf '%s\n' "$output"
else
  mkdir -p "$(dirname "$docker_env")"
  temp="$docker_env.$$.tmp"
  printf '%s\n' "$output" > "$temp"
  mv -f "$temp" "$docker_env"
fi
