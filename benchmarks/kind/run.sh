#!/usr/bin/env bash
# The benchmark inside a real Kubernetes cluster (kind): create the cluster, build and load the
# image, start the echo StatefulSets, run the benchmark Job, print its report, delete the
# cluster. Needs docker, kind and kubectl. Usage: benchmarks/kind/run.sh [--full]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cluster="headless-bench"
image="headless-resolver-bench:dev"
context="kind-$cluster"

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

kind create cluster --config "$here/kind-config.yaml" --name "$cluster" --wait 120s
trap 'kind delete cluster --name "$cluster"' EXIT

docker build -f "$here/Dockerfile" -t "$image" "$repo"
kind load docker-image "$image" --name "$cluster"

kubectl --context "$context" apply -f "$here/manifests/echo.yaml"
for set in echo echo-wide echo-slow; do
  kubectl --context "$context" rollout status "statefulset/$set" --timeout=180s
done

if [[ "${1:-}" == "--full" ]]; then
  sed 's/args: \["--quick"\]/args: []/' "$here/manifests/job.yaml" | kubectl --context "$context" apply -f -
  timeout=20m
else
  kubectl --context "$context" apply -f "$here/manifests/job.yaml"
  timeout=5m
fi
if ! kubectl --context "$context" wait --for=condition=complete job/headless-bench --timeout="$timeout"; then
  kubectl --context "$context" logs job/headless-bench || true
  echo "run.sh: the benchmark job did not complete" >&2
  exit 1
fi
kubectl --context "$context" logs job/headless-bench
