# Sourced by bin/actorq, bin/test and bin/bench: create .venv from pyproject.toml on
# first use, and reinstall when pyproject.toml or the wanted extras change.
# Usage: ensure_venv EXTRAS   (EXTRAS like "test" or "" for the runtime only)
ensure_venv() {
    local extras="$1"
    local root venv stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.venv"
    stamp="$venv/.actorq-installed"
    want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16) extras=$extras"
    if [[ -f "$stamp" ]] && { grep -qxF -- "$want" "$stamp" || { [[ -z "$extras" ]] && grep -q "^${want%% *} " "$stamp"; }; }; then
        return 0
    fi
    # Two bin/ commands started together must not both build the venv.
    exec 9>"$root/.venv.lock"
    flock 9
    if [[ -f "$stamp" ]] && { grep -qxF -- "$want" "$stamp" || { [[ -z "$extras" ]] && grep -q "^${want%% *} " "$stamp"; }; }; then
        exec 9>&-
        return 0
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "actorq: creating $venv (first run)" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip >&2
    fi
    local spec="$root"
    [[ -n "$extras" ]] && spec="$root[$extras]"
    echo "actorq: installing dependencies from pyproject.toml${extras:+ (extras: $extras)}" >&2
    "$venv/bin/python" -m pip install -q -e "$spec" >&2
    echo "$want" >>"$stamp"
    exec 9>&-
}
