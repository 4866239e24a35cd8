#!/usr/bin/env bash
# Installs the real Claude Code, Codex and Gemini CLIs for the e2e tests with npm.
#
#   e2e/install-clis.sh            # from anywhere
#
# Environment:
#   E2E_NPM_PREFIX          install prefix (default: e2e/.npm; a relative path is
#                           taken from the repository root, as in the Go tests)
#   E2E_CLAUDE_CODE_VERSION @anthropic-ai/claude-code version (default: the tested one)
#   E2E_CODEX_VERSION       @openai/codex version (default: the tested one)
#   E2E_GEMINI_CLI_VERSION  @google/gemini-cli version (default: the tested one)
#   E2E_SKIP_CODEX=1        do not install Codex
#   E2E_SKIP_GEMINI=1       do not install the Gemini CLI
#
# Idempotent: packages already installed at the wanted version are not
# reinstalled. Needs node >= 20 (the Gemini CLI's minimum) and npm with
# access to the npm registry.
set -euo pipefail

e2e_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$e2e_dir/.." && pwd)"

prefix="${E2E_NPM_PREFIX:-e2e/.npm}"
case "$prefix" in
/*) ;;
*) prefix="$repo_root/$prefix" ;;
esac

claude_version="${E2E_CLAUDE_CODE_VERSION:-2.1.197}"
codex_version="${E2E_CODEX_VERSION:-0.171.0}"
gemini_version="${E2E_GEMINI_CLI_VERSION:-0.61.0}"

installed_version() { # <package name>
	local pj="$prefix/node_modules/$1/package.json"
	[ -f "$pj" ] || return 0
	node -e 'process.stdout.write(require(process.argv[1]).version || "")' "$pj"
}

want=()
if [ "$(installed_version @anthropic-ai/claude-code)" != "$claude_version" ] || [ "$claude_version" = latest ]; then
	want+=("@anthropic-ai/claude-code@$claude_version")
fi
if [ "${E2E_SKIP_CODEX:-}" != 1 ]; then
	if [ "$(installed_version @openai/codex)" != "$codex_version" ] || [ "$codex_version" = latest ]; then
		want+=("@openai/codex@$codex_version")
	fi
fi
if [ "${E2E_SKIP_GEMINI:-}" != 1 ]; then
	if [ "$(installed_version @google/gemini-cli)" != "$gemini_version" ] || [ "$gemini_version" = latest ]; then
		want+=("@google/gemini-cli@$gemini_version")
	fi
fi

mkdir -p "$prefix"
if [ "${#want[@]}" -gt 0 ]; then
	echo "install-clis: npm install --prefix $prefix ${want[*]}"
	# A registry hiccup should not fail CI: try three times.
	for try in 1 2 3; do
		npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "${want[@]}" && break
		[ "$try" -lt 3 ] || exit 1
		echo "install-clis: npm install failed; retrying" >&2
		sleep 5
	done
fi

# Claude Code's package ships a placeholder bin/claude.exe that its postinstall
# script replaces with the native binary. npm versions that hold back install
# scripts leave the placeholder; run the postinstall ourselves then.
claude_pkg="$prefix/node_modules/@anthropic-ai/claude-code"
if ! "$prefix/node_modules/.bin/claude" --version >/dev/null 2>&1; then
	echo "install-clis: running Claude Code's postinstall (node install.cjs)"
	(cd "$claude_pkg" && node install.cjs)
fi

echo "install-clis: claude $("$prefix/node_modules/.bin/claude" --version)"
if [ "${E2E_SKIP_CODEX:-}" != 1 ]; then
	# codex may warn on stderr about helper binaries under /tmp; keep stdout only.
	echo "install-clis: $("$prefix/node_modules/.bin/codex" --version 2>/dev/null)"
fi
if [ "${E2E_SKIP_GEMINI:-}" != 1 ]; then
	echo "install-clis: gemini $("$prefix/node_modules/.bin/gemini" --version 2>/dev/null)"
fi
