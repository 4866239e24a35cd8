// Command caddy is Caddy with the llm_proxy plugin and Caddy's standard modules.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-llm-proxy/llmproxy"
)

func main() {
	caddycmd.Main()
}
