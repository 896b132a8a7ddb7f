# shellcheck shell=bash
# Functions shared by benchmarks/kind/run.sh and benchmarks/kind/simulate.sh; source it.

# The lines benchmarks/kind/job.py prints around the results archive.
RESULTS_BEGIN='----- BEGIN headless-bench results (tar.gz, base64) -----'
RESULTS_END='----- END headless-bench results -----'

# extract_results LOG DIR: unpack the results archive the Job printed into LOG into DIR
# (results.md, results.json, the plots). Fails, saying so, when LOG holds no whole archive.
extract_results() {
    local log=$1 dir=$2
    if ! grep -qxF -- "$RESULTS_BEGIN" "$log" || ! grep -qxF -- "$RESULTS_END" "$log"; then
        echo "no results archive in $log (the benchmark did not get to the end)" >&2
        return 1
    fi
    mkdir -p "$dir"
    awk -v begin="$RESULTS_BEGIN" -v end="$RESULTS_END" \
        '$0 == end { inside = 0 } inside { print } $0 == begin { inside = 1 }' "$log" |
        base64 -d | tar -xzf - -C "$dir"
}

# corefile_settings: from a CoreDNS Corefile on stdin, one line with what decides how long an
# answer lives: the kubernetes plugin's ttl and the cache plugin with its options.
corefile_settings() {
    awk '
        function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
        /^[ \t]*kubernetes[ \t]/ { kube = 1; next }
        kube && /^[ \t]*ttl[ \t]/ { ttl = $2 }
        kube && /^[ \t]*}/ { kube = 0 }
        incache {
            line = trim($0)
            if (line == "}") { cache = cache " }"; incache = 0 }
            else { cache = cache (cache ~ /{$/ ? " " : "; ") line }
            next
        }
        /^[ \t]*cache([ \t]|$)/ { cache = trim($0); incache = (cache ~ /{$/) }
        END {
            printf "kubernetes plugin ttl %s; %s\n", (ttl == "" ? "5 (the default)" : ttl),
                (cache == "" ? "no cache plugin" : cache)
        }'
}
