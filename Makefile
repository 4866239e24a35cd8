# llm_proxy for Caddy. `make demo` runs the demo, `make test` runs every test.
GO ?= go

.PHONY: demo test check build bench clis

## demo: build Caddy with llm_proxy and the mock upstream, show requests spreading over three credentials
demo:
	scripts/demo.sh

## test: every test, with the race detector, then 20s of fuzzing the request path (the README's test command; .ci/run calls it)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -run='^$$' -fuzz=FuzzRequestPath -fuzztime=20s ./internal/handler/

## check: formatting and static analysis
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## build: ./caddy with the plugin
build:
	$(GO) build -o caddy ./cmd/caddy

## clis: install the real Claude Code, Codex and Gemini CLIs and the Anthropic SDK for the end-to-end tests
clis:
	bash e2e/install-clis.sh
	bash sdkcheck/install.sh

## bench: benchmarks of SPEC section 11 (see BENCHMARKS.md)
bench:
	scripts/bench.sh
