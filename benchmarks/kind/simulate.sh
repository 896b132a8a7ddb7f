#!/usr/bin/env bash
# The kind benchmark's Job without Docker or Kubernetes: what the Job's container sees, built
# from network namespaces on this machine, then the Job's own command (manifests/job.yaml:
# benchmarks/kind/job.py, so run.py --target cluster --quick) and the same extraction of its
# results as run.sh. Needs root, unshare (util-linux), ip (iproute2) and nft (nftables).
#
# Usage: benchmarks/kind/simulate.sh [--out DIR]   (default DIR: bench-results/kind-simulated)
#
# Inside new PID, mount and network namespaces (nothing else on the machine is touched, and
# everything ends with them, on success, failure or interruption):
# - a "node" namespace with two bridges, one per kind worker: 10.244.1.0/24 for the echo pods,
#   10.244.2.0/24 for the client, routed to each other;
# - one namespace per echo pod of manifests/echo.yaml (its own eth0 on the first bridge,
#   benchmarks/kind/echo.py on :8080 with the StatefulSet's environment and the pod's name);
# - a client namespace (eth0 on the second bridge) with its own mounts: a pod's
#   /etc/resolv.conf (search default.svc.cluster.local svc.cluster.local cluster.local,
#   nameserver 10.96.0.10, ndots:5), /etc/hosts and /etc/nsswitch.conf, and an empty /tmp;
# - the cluster DNS (headless_resolver.testing.ClusterDNS, TTL 30, the echo Services) on the
#   client's loopback at 127.0.0.10:53, reached at the service address 10.96.0.10:53 through
#   a DNAT rule, as kube-proxy sends a pod's DNS queries to CoreDNS;
# - the Job's command run there, from the repository, with glibc resolving for plain clients.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=benchmarks/kind/_kit.sh
source "$here/_kit.sh"
python="${PYTHON:-$repo/.venv/bin/python}"

echo_subnet="10.244.1.0/24"
echo_gateway="10.244.1.1"
client_gateway="10.244.2.1"
client_ip="10.244.2.2"
dns_service="10.96.0.10"
dns_listen="127.0.0.10"
cluster_info="none: network namespaces on one machine (benchmarks/kind/simulate.sh), no kind,"
cluster_info+=" no Kubernetes; cluster DNS: ClusterDNS, kubernetes plugin ttl 30, no cache"

say() { printf '==> %s\n' "$*" >&2; }

work=""
namespaces=""
# On any exit of the outer script: end the namespaces (their first process takes every other
# one with it) and remove the work folder.
cleanup() {
    local status=$?
    trap - EXIT
    [[ -z $namespaces ]] || kill -KILL "$namespaces" 2>/dev/null || true
    [[ -z $work ]] || rm -rf "$work"
    exit "$status"
}

# outside [--out DIR]: check, start the namespaces, wait, then extract and print the report.
outside() {
    out="bench-results/kind-simulated"
    while (($#)); do
        case $1 in
            --out)
                out=${2:?"--out needs a folder"}
                shift
                ;;
            -h | --help)
                sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *)
                echo "simulate.sh: unknown argument $1 (see --help)" >&2
                exit 2
                ;;
        esac
        shift
    done
    ((EUID == 0)) || { echo "simulate.sh: needs root (network namespaces, mounts)" >&2; exit 2; }
    for tool in unshare nsenter ip nft; do
        command -v "$tool" >/dev/null || { echo "simulate.sh: $tool is required" >&2; exit 2; }
    done
    [[ -x $python ]] || { echo "simulate.sh: no $python; run ./scripts/test once, or set PYTHON" >&2; exit 2; }
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    work="$(mktemp -d)"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    started=$SECONDS
    unshare --pid --fork --kill-child --mount-proc --net --mount \
        "$0" --inside "$work" &
    namespaces=$!
    status=0
    wait "$namespaces" || status=$?
    namespaces=""
    if ((status != 0)); then
        say "the simulated Job failed (exit $status); its log:"
        tail -n 60 "$work/job.log" >&2 2>/dev/null || true
        exit "$status"
    fi
    cp "$work/job.log" "$out/job.log"
    extract_results "$out/job.log" "$out"
    cat "$out/results.md"
    say "done in $((SECONDS - started)) s; results in $out: results.md, results.json," \
        "latency_cdf.png, requests_per_pod.png, job.log"
}

if [[ ${1:-} != --inside ]]; then
    outside "$@"
    exit 0
fi

# -- inside: PID 1 of the new PID namespace, in the "node" network namespace -------------------
work=$2
PATH="$(dirname "$python"):$PATH"
export PATH

ip link set lo up
echo 1 >/proc/sys/net/ipv4/ip_forward
ip link add br-echo type bridge
ip addr add "$echo_gateway/24" dev br-echo
ip link set br-echo up
ip link add br-client type bridge
ip addr add "$client_gateway/24" dev br-client
ip link set br-client up

# in_netns PID COMMAND...: COMMAND in the network namespace of PID.
in_netns() { nsenter --target "$1" --net -- "${@:2}"; }

# wait_own_netns PID: until PID has left this network namespace (unshare has run).
wait_own_netns() {
    local mine
    mine=$(readlink /proc/self/ns/net)
    until [[ -e /proc/$1/ns/net && $(readlink "/proc/$1/ns/net") != "$mine" ]]; do
        kill -0 "$1" 2>/dev/null || { echo "simulate.sh: process $1 ended early" >&2; return 1; }
        sleep 0.02
    done
}

# plug PID BRIDGE IP GATEWAY: give PID's namespace an eth0 on BRIDGE with IP, routed via GATEWAY.
links=0
plug() {
    local veth="veth$((links++))"
    wait_own_netns "$1"
    ip link add "$veth" type veth peer name eth0 netns "$1"
    ip link set "$veth" master "$2" up
    in_netns "$1" ip link set lo up
    in_netns "$1" ip addr add "$3/24" dev eth0
    in_netns "$1" ip link set eth0 up
    in_netns "$1" ip route add default via "$4"
}

say "starting the echo pods"
declare -a pod_ips=()
while read -r -a fields; do
    hostname=${fields[1]} address=${fields[2]}
    env -i PATH="$PATH" HOSTNAME="$hostname" "${fields[@]:3}" \
        unshare --net "$python" "$here/echo.py" >"$work/$hostname.log" 2>&1 &
    plug $! br-echo "$address" "$echo_gateway"
    pod_ips+=("$address")
done < <("$python" "$here/simulate.py" pods "$echo_subnet")

say "preparing the client pod"
fifo="$work/start"
mkfifo "$fifo"
cat >"$work/resolv.conf" <<EOF
search default.svc.cluster.local svc.cluster.local cluster.local
nameserver $dns_service
options ndots:5
EOF
cat >"$work/hosts" <<EOF
# Kubernetes-managed hosts file.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
$client_ip	headless-bench-sim
EOF
printf 'hosts: files dns\n' >"$work/nsswitch.conf"
# The client waits on the FIFO until its network, mounts and DNS are in place.
# shellcheck disable=SC2016 # "$0" and "$@" are the inner shell's
unshare --net --mount -- sh -c 'read -r _ <"$0" && exec "$@"' "$fifo" \
    "$python" "$here/simulate.py" job --cluster-info "$cluster_info" >"$work/job.log" 2>&1 &
client=$!
plug "$client" br-client "$client_ip" "$client_gateway"
nsenter --target "$client" --mount -- sh -c "
    mount --bind '$work/resolv.conf' /etc/resolv.conf &&
    mount --bind '$work/hosts' /etc/hosts &&
    mount --bind '$work/nsswitch.conf' /etc/nsswitch.conf &&
    mount -t tmpfs -o mode=1777 tmpfs /tmp"
# DNAT to a loopback address needs route_localnet (in the client's namespace only).
in_netns "$client" sh -c 'echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet'
in_netns "$client" nft -f - <<EOF
table ip kube-proxy {
    chain output {
        type nat hook output priority -100;
        ip daddr $dns_service udp dport 53 dnat to $dns_listen:53
        ip daddr $dns_service tcp dport 53 dnat to $dns_listen:53
    }
}
EOF
in_netns "$client" "$python" "$here/simulate.py" dns "$echo_subnet" \
    --listen "$dns_listen" --ready "$work/dns.ready" >"$work/dns.log" 2>&1 &
dns=$!
for _ in $(seq 600); do # up to a minute: Python starts slowly on a busy machine
    [[ -s $work/dns.ready ]] && break
    kill -0 "$dns" 2>/dev/null || { cat "$work/dns.log" >&2; exit 1; }
    sleep 0.1
done
[[ -s $work/dns.ready ]] || { echo "simulate.sh: the cluster DNS did not start" >&2; exit 1; }

# Readiness, as the kubelet's probes and a lookup from the pod would see it.
in_netns "$client" "$python" - "${pod_ips[@]}" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 120
for ip in sys.argv[1:]:
    while True:
        try:
            socket.create_connection((ip, 8080), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"echo pod {ip}:8080 does not answer")
            time.sleep(0.1)
EOF
lookup=$(nsenter --target "$client" --net --mount -- getent ahostsv4 echo.default.svc.cluster.local |
    awk '{print $1}' | sort -u | xargs)
say "glibc in the client pod: echo.default.svc.cluster.local -> $lookup"
[[ $(wc -w <<<"$lookup") == 3 ]] || { echo "simulate.sh: expected 3 addresses" >&2; exit 1; }

say "running the Job's command ($(wc -l <"$work/dns.ready") DNS server: $(cat "$work/dns.ready"))"
echo start >"$fifo"
tail -f "$work/job.log" --pid "$client" | grep --line-buffered -e '^\[' -e '^job:' -e failed >&2 &
wait "$client"
