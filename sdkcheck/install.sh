#!/usr/bin/env bash
# Installs the SDKs used by sdkcheck/*.mjs into sdkcheck/node_modules
# (gitignored). Run from anywhere; needs node >= 18 and npm.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
# A registry hiccup should not fail CI: try three times.
for try in 1 2 3; do
	npm install --prefix sdkcheck --no-audit --no-fund && break
	[ "$try" -lt 3 ] || exit 1
	echo "sdkcheck: npm install failed; retrying" >&2
	sleep 5
done
