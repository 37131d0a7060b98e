# shellcheck shell=bash
# deploy/lib/deps.sh: install the Debian packages ShardVault needs (sourced, not run).

# libhttp-parser-dev: the metrics endpoint's HTTP parser; prometheus: promtool,
# which the metrics-promtool test runs (README.md, Dependencies).
SV_DEPS=(build-essential cmake pkg-config libssl-dev libuv1-dev libleveldb-dev
         libmsgpack-dev liburing-dev libhttp-parser-dev iproute2 iptables clang-format
         openssl prometheus)

# sv_install_deps: install every package of SV_DEPS that is not installed yet.
# Returns non-zero if packages are missing and cannot be installed.
sv_install_deps()
{
    local pkg missing=() sudo=()
    for pkg in "${SV_DEPS[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0

    echo "deps: installing ${missing[*]}" >&2
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "deps: missing packages (${missing[*]}) and not root, no sudo: install them by hand" >&2
            return 1
        fi
    fi
    "${sudo[@]}" apt-get update &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${missing[@]}"
}
