// Package e2e holds end-to-end tests that drive the real Claude Code, Codex
// and Gemini CLIs through a Caddy binary built with the llm_proxy plugin, in
// front of the bundled mock LLM upstream (cmd/mockllm), all on loopback.
//
// Install the CLIs first (into e2e/.npm, or $E2E_NPM_PREFIX):
//
//	e2e/install-clis.sh
//	E2E_REQUIRE_CLIS=1 go test -v -count=1 ./e2e/
//
// Without the CLIs the tests skip, unless E2E_REQUIRE_CLIS=1 is set, in which
// case they fail. CLAUDE_BIN, CODEX_BIN and GEMINI_BIN override the
// binaries used.
package e2e
