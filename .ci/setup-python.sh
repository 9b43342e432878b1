#!/usr/bin/env bash
# The Python libraries the replaced services used (FastAPI, httpx, PyJWT, python-jose,
# passlib + bcrypt), for tests/it/compat_python.rs: a virtualenv in target/pyvenv with
# exactly the pinned, hash-checked versions of tests/python/requirements.txt.
# Prints the venv's python on its last line; .ci/run exports it as PORTCULLIS_TEST_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyvenv
requirements=tests/python/requirements.txt
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
