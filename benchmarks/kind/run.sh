#!/usr/bin/env bash
# The benchmark inside a real Kubernetes cluster (kind): create the cluster, build the image and
# load it into the nodes, start the echo StatefulSets, run the benchmark Job, copy its results
# (results.md, results.json, the plots and the Job's log) to a local folder, print the report,
# delete the cluster. Needs Docker >= 23 (BuildKit), kind >= v0.30.0 and kubectl.
#
# Usage: benchmarks/kind/run.sh [--full] [--out DIR]
#   --full          the full benchmark instead of --quick
#   --out DIR       where the results go (default: bench-results/kind)
#   KEEP_CLUSTER=1  keep the cluster at the end, failed or not
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=benchmarks/kind/_kit.sh
source "$here/_kit.sh"
cluster="headless-bench"
image="headless-resolver-bench:dev"
context="kind-$cluster"
min_kind="0.30.0"

full=""
out="bench-results/kind"
while (($#)); do
    case $1 in
        --full) full=1 ;;
        --out)
            out=${2:?"--out needs a folder"}
            shift
            ;;
        -h | --help)
            sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "run.sh: unknown argument $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

# stdout is for the report only: everything else (kind, docker, kubectl) goes to stderr.
exec 3>&1 1>&2
say() { printf '==> %s\n' "$*" >&2; }
k() { kubectl --context "$context" "$@"; }

# version_at_least HAVE WANT: HAVE >= WANT, both as dotted numbers.
version_at_least() { printf '%s\n%s\n' "$2" "$1" | sort -V -C; }

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done
kind_version=$(kind version | awk '{print $2}')
if ! version_at_least "${kind_version#v}" "$min_kind"; then
    echo "run.sh: kind $kind_version is older than v$min_kind, the release whose node image" \
        "kind-config.yaml pins; install kind v$min_kind or newer" >&2
    exit 2
fi
docker info >/dev/null 2>&1 || { echo "run.sh: docker is not running ('docker info' failed)" >&2; exit 2; }
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    echo "run.sh: a kind cluster named $cluster already exists;" \
        "delete it first: kind delete cluster --name $cluster" >&2
    exit 2
fi
if [[ -r /proc/meminfo ]]; then
    available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    if ((${available_kb:-0} < 4 * 1024 * 1024)); then
        say "warning: $((${available_kb:-0} / 1024)) MiB of memory available; the cluster needs about 4 GiB"
    fi
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# Everything a failed run needs to be understood: nodes, pods, events, the pods that are not
# ready (described, with their logs) and the Job's log.
diagnose() {
    say "the run failed; the cluster as it is now:"
    k get nodes -o wide || true
    k get pods -o wide || true
    k -n kube-system get pods -o wide || true
    k get events --sort-by=.lastTimestamp | tail -n 40 || true
    local pod ready
    while read -r pod ready; do
        [[ $ready == true && $pod != headless-bench-* ]] && continue
        say "kubectl describe pod $pod"
        k describe pod "$pod" | tail -n 40 || true
        say "kubectl logs $pod"
        k logs "$pod" --all-containers --tail=100 || true
    done < <(k get pods --no-headers \
        -o custom-columns='NAME:.metadata.name,READY:.status.containerStatuses[*].ready' || true)
}

created=""
finish() {
    local status=$?
    trap - EXIT
    if [[ -n $created ]]; then
        ((status == 0)) || diagnose >&2
        if [[ ${KEEP_CLUSTER:-} == 1 ]]; then
            say "KEEP_CLUSTER=1: the cluster stays (kubectl --context $context ...);" \
                "delete it with: kind delete cluster --name $cluster"
        else
            say "deleting the cluster (KEEP_CLUSTER=1 keeps it)"
            kind delete cluster --name "$cluster" >&2 || true
        fi
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

say "creating the kind cluster $cluster (kind $kind_version)"
created=1
kind create cluster --config "$here/kind-config.yaml" --name "$cluster" --wait 180s
k -n kube-system rollout status deployment/coredns --timeout=120s

# Provenance and SBOM attestations make the image an index that `kind load docker-image`
# cannot import with Docker's containerd image store: build without them.
say "building $image"
if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load --provenance=false --sbom=false \
        -f "$here/Dockerfile" -t "$image" "$repo"
else
    docker build -f "$here/Dockerfile" -t "$image" "$repo"
fi
say "loading $image into the nodes"
if ! kind load docker-image "$image" --name "$cluster"; then
    platform=$(docker version -f '{{.Server.Os}}/{{.Server.Arch}}')
    say "kind load docker-image failed; loading a $platform-only archive instead"
    archive="$(mktemp -d)/image.tar"
    docker save --platform "$platform" -o "$archive" "$image"
    kind load image-archive "$archive" --name "$cluster"
    rm -rf "$(dirname "$archive")"
fi

say "starting the echo pods"
k apply -f "$here/manifests/echo.yaml"
for set in echo echo-wide echo-slow; do
    k rollout status "statefulset/$set" --timeout=180s
done

# What the report's header says the benchmark ran under.
kube_version=$(k get nodes -o jsonpath='{.items[0].status.nodeInfo.kubeletVersion}')
coredns_image=$(k -n kube-system get deployment coredns \
    -o jsonpath='{.spec.template.spec.containers[0].image}')
dns_settings=$(k -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}' |
    corefile_settings)
info="Kubernetes $kube_version (kind $kind_version), CoreDNS ${coredns_image##*:}: $dns_settings"
say "$info"
k create configmap headless-bench-cluster --from-literal=info="$info"

# Fails at once when the Job fails or its pod cannot start (kubectl wait would sit out its
# whole timeout); shows the Job's latest progress line meanwhile.
wait_for_job() {
    local deadline=$((SECONDS + $1)) last="" state reason line unschedulable=0
    while ((SECONDS < deadline)); do
        state=$(k get job headless-bench -o jsonpath='{.status.succeeded}/{.status.failed}' || true)
        case $state in
            1/*) return 0 ;;
            */[1-9]*)
                say "the benchmark Job failed"
                return 1
                ;;
        esac
        reason=$(k get pods -l job-name=headless-bench -o jsonpath='{.items[0].status.containerStatuses[0].state.waiting.reason}{"/"}{.items[0].status.conditions[?(@.type=="PodScheduled")].reason}' 2>/dev/null || true)
        case ${reason%/*} in
            ErrImageNeverPull | ErrImagePull | ImagePullBackOff | InvalidImageName | \
                CreateContainerConfigError | CreateContainerError | RunContainerError)
                say "the benchmark pod cannot start: ${reason%/*}"
                return 1
                ;;
        esac
        if [[ ${reason#*/} == Unschedulable ]] && ((++unschedulable > 12)); then
            say "the benchmark pod has found no node for a minute"
            return 1
        fi
        line=$(k logs job/headless-bench --tail=1 2>/dev/null || true)
        if [[ $line == "["* && $line != "$last" ]]; then
            printf '    %s\n' "$line" >&2
            last=$line
        fi
        sleep 5
    done
    say "the benchmark Job did not finish within $1 s"
    return 1
}

if [[ -n $full ]]; then
    say "running the benchmark Job (full run)"
    sed 's/args: \["--quick"\]/args: []/' "$here/manifests/job.yaml" | k apply -f -
    wait_for_job 1800
else
    say "running the benchmark Job (--quick)"
    k apply -f "$here/manifests/job.yaml"
    wait_for_job 600
fi

k logs job/headless-bench >"$out/job.log"
extract_results "$out/job.log" "$out"
cat "$out/results.md" >&3
say "results in $out: results.md, results.json, latency_cdf.png, requests_per_pod.png, job.log"
