#!/usr/bin/env bash
# Installs the SDKs used by sdkcheck/*.mjs into sdkcheck/node_modules
# (gitignored). Run from anywhere; needs node >= 18 and npm.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
npm install --prefix sdkcheck --no-audit --no-fund
