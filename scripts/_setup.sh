# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and .ci/run: system packages and the project venv.
# Source it from the repository root; it defines functions only.

DNS_PACKAGES=(knot bind9)

missing_dns_servers() {
    local sbin="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
    ! PATH="$sbin" command -v knotd >/dev/null || ! PATH="$sbin" command -v knotc >/dev/null ||
        ! PATH="$sbin" command -v named >/dev/null
}

# The interpreter for the venv: $PYTHON, else the newest python3.x >= 3.11 on PATH.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

python_can_make_venvs() {
    local python
    python=$(find_python) && "$python" -c 'import ensurepip, venv' 2>/dev/null
}

# apt-get install without starting the packaged daemons: in a container (no systemd) their
# init scripts would run named/knotd on port 53; our tests start their own on free ports.
apt_install_quietly() {
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local attempt
    for attempt in 1 2 3; do
        apt-get -qq -o Acquire::Retries=3 update && break
        if [[ $attempt == 3 ]]; then
            [[ -z $created_policy ]] || rm -f "$policy"
            return 1
        fi
        sleep 5
    done
    local status=0
    apt-get -qq -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 install -y --no-install-recommends \
        "$@" >/dev/null || status=$?
    [[ -z $created_policy ]] || rm -f "$policy"
    return "$status"
}

# Knot DNS and BIND 9 for the real-server tests (and python3-venv where Debian splits it off).
ensure_dns_servers() {
    local wanted=()
    missing_dns_servers && wanted+=("${DNS_PACKAGES[@]}")
    [[ -x .venv/bin/python ]] || python_can_make_venvs || wanted+=(python3-venv)
    ((${#wanted[@]})) || return 0
    if [[ $(id -u) != 0 ]]; then
        echo "Missing system packages. Install them with: sudo apt-get install ${wanted[*]}" >&2
        exit 1
    fi
    echo "Installing ${wanted[*]} ..." >&2
    apt_install_quietly "${wanted[@]}"
}

# .venv with the project installed editable, with the extras given (default: dev). pip runs
# only when pyproject.toml changed since the last successful install of those extras (a copy of
# it is kept in the venv as the stamp); an install with dev also satisfies a plain one.
ensure_venv() {
    local extras=${1-dev}
    if [[ ! -x .venv/bin/python ]]; then
        local python
        if ! python=$(find_python); then
            echo "headless_resolver needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
            exit 1
        fi
        if ! python_can_make_venvs; then
            echo "Cannot create a venv. Install it with: sudo apt-get install python3-venv" >&2
            exit 1
        fi
        "$python" -m venv .venv
    fi
    local stamp=.venv/.installed-pyproject${extras:+-$extras}.toml
    if cmp -s pyproject.toml "$stamp" || cmp -s pyproject.toml .venv/.installed-pyproject-dev.toml
    then
        return 0
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
    cp pyproject.toml "$stamp"
}
