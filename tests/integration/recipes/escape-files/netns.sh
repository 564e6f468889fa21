#!/bin/bash
# Runs COMMAND... in a network namespace of its own, started by the caller
# with `unshare -n` (tests/integration/escape.sh), that stands for the build
# host's network without any way off this machine:
#   lo       127.0.0.1, ::1, and 169.254.169.254 / fd00:ec2::254 (the
#            metadata addresses, served here, so that a sandbox that
#            reached them would be caught by the listeners, not by AWS)
#   v0       the "uplink": 10.99.0.2/24 and fd99::2/64, default routes via
#            10.99.0.1 and fd99::1, which nothing answers (IPv6 only where
#            the kernel has it)
#   v1       v0's peer, in this same namespace: 10.99.0.3, a "LAN peer"
#            whose listener must be reachable with network: true
# Listeners (listener.py) on PORT of 127.0.0.1, ::1, 169.254.169.254,
# fd00:ec2::254 and 10.99.0.3, and on port 80 of the metadata addresses,
# log every connection to LOG.  One connection to 127.0.0.1:PORT is made
# before COMMAND as a control.  While COMMAND runs, every pasta in this
# namespace is looked at: LOG.pasta gets "PID N" lines, N the number of
# variables of its environment holding $AMIFORGE_TEST_SECRET.
# Usage: netns.sh LOG PORT COMMAND...
set -eu
log=$1 port=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
ip link set lo up
ip link add v0 type veth peer name v1
ip link set v0 up
ip link set v1 up
ip addr add 10.99.0.2/24 dev v0
ip addr add 10.99.0.3/32 dev v1
ip route add default via 10.99.0.1 dev v0
ip addr add 169.254.169.254/32 dev lo
listen=(127.0.0.1:"$port" 169.254.169.254:"$port" 169.254.169.254:80 10.99.0.3:"$port")
if [ -e /proc/net/if_inet6 ]; then
	ip addr add fd99::2/64 dev v0 nodad
	ip -6 route add default via fd99::1 dev v0
	ip addr add fd00:ec2::254/128 dev lo nodad
	listen+=("[::1]:$port" "[fd00:ec2::254]:$port" "[fd00:ec2::254]:80")
fi
ready=$(mktemp)
rm -f "$ready"
python3 "$here/listener.py" "$log" "$ready" "${listen[@]}" &
lpid=$!
trap 'kill $lpid 2>/dev/null; wait $lpid 2>/dev/null; rm -f "$ready"' EXIT
for _ in $(seq 100); do [ -e "$ready" ] && break; sleep 0.05; done
[ -e "$ready" ] || { echo "netns.sh: the listeners did not start" >&2; exit 90; }
python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2).close()' "$port"
# pasta runs in this namespace (the jail's is its target): ours are those.
me=$(readlink /proc/self/ns/net)
(
	seen=" "
	while :; do
		for p in $(pgrep 'pasta|passt'); do
			case "$seen" in *" $p "*) continue ;; esac
			[ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$me" ] || continue
			# grep -c exits 1 on a count of 0, the good case: under set -e
			# that ended the sampler at the first clean pasta.
			n=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -cF -- "${AMIFORGE_TEST_SECRET:-no secret given}" || true)
			echo "$p $n" >>"$log.pasta"
			seen+="$p "
		done
		sleep 0.2
	done
) &
wpid=$!
trap 'kill $lpid $wpid 2>/dev/null; wait $lpid $wpid 2>/dev/null; rm -f "$ready"' EXIT
set +e
"$@"
