#!/usr/bin/env bash
# Installs the Node tools tests use, exactly as pinned by their package-lock.json:
# panva's oidc-provider for tests/it/oauth_node.rs and the benchmark (in tests/oidc-provider),
# panva's openid-client for tests/it/oidc_interop.rs (in tests/openid-client), and
# Deque's axe-core for the accessibility check of tests/it/browser.rs (in tests/axe).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
    apt-get update && apt-get install -y --no-install-recommends nodejs npm
fi
npm ci --prefix tests/oidc-provider --no-audit --no-fund
npm ci --prefix tests/axe --no-audit --no-fund
npm ci --prefix tests/openid-client --no-audit --no-fund
