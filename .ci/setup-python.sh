#!/usr/bin/env bash
# A virtualenv with exactly the pinned, hash-checked versions of a requirements file,
# rebuilt when the file changes. By default the Python libraries the replaced services
# used (FastAPI, httpx, PyJWT, python-jose, passlib + bcrypt), for
# tests/it/compat_python.rs: tests/python/requirements.txt in target/pyvenv; with
# arguments, `REQUIREMENTS VENV` (schemathesis for tests/it/api_fuzz.rs).
# Prints the venv's python on its last line; .ci/run exports what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=${1:-tests/python/requirements.txt}
venv=${2:-target/pyvenv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt-get update && apt-get install -y --no-install-recommends python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes --only-binary=:all: -r "$requirements" >&2
    echo "$want" > "$stamp"
fi
echo "$PWD/$venv/bin/python"
