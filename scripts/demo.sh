#!/usr/bin/env bash
# Demo: Caddy with llm_proxy in front of the bundled mock LLM upstream with
# three Claude credentials. Shows new conversations spreading over the pool
# and each conversation's later turns staying on its credential.
# No real keys needed. Usage: make demo   (or scripts/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=.demo
SITE_PORT=${DEMO_PORT:-8480}
ADMIN_PORT=${DEMO_ADMIN_PORT:-2480}
mkdir -p "$DEMO_DIR"

echo "==> building caddy (with llm_proxy) and the mock upstream"
go build -o "$DEMO_DIR/caddy" ./cmd/caddy
go build -o "$DEMO_DIR/mockllm" ./cmd/mockllm

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "==> starting the mock upstream"
"$DEMO_DIR/mockllm" -listen 127.0.0.1:0 -quiet \
	-keys "claude-1=sk-ant-demo-one,claude-2=sk-ant-demo-two,claude-3=sk-ant-demo-three" >"$DEMO_DIR/mock.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "listening on" "$DEMO_DIR/mock.log" && break; sleep 0.1; done
MOCK_URL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DEMO_DIR/mock.log" | head -1)
[ -n "$MOCK_URL" ] || { echo "mock did not start:"; cat "$DEMO_DIR/mock.log"; exit 1; }
echo "    mock at $MOCK_URL"

cat >"$DEMO_DIR/Caddyfile" <<CFG
{
	admin 127.0.0.1:$ADMIN_PORT
	storage file_system {
		root $PWD/$DEMO_DIR/storage
	}
}

http://127.0.0.1:$SITE_PORT {
	llm_proxy {
		pool demo
		auth claude-1 {
			provider claude
			api_key {env.DEMO_KEY_1}
			base_url $MOCK_URL
		}
		auth claude-2 {
			provider claude
			api_key {env.DEMO_KEY_2}
			base_url $MOCK_URL
		}
		auth claude-3 {
			provider claude
			api_key {env.DEMO_KEY_3}
			base_url $MOCK_URL
		}
		routing {
			strategy round_robin
			session_affinity on
		}
		access {
			api_keys demo-client-key
		}
	}
}
CFG

echo "==> starting caddy"
DEMO_KEY_1=sk-ant-demo-one DEMO_KEY_2=sk-ant-demo-two DEMO_KEY_3=sk-ant-demo-three \
	"$DEMO_DIR/caddy" run --config "$DEMO_DIR/Caddyfile" --adapter caddyfile >"$DEMO_DIR/caddy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$ADMIN_PORT/config/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/config/" >/dev/null || { echo "caddy did not start:"; cat "$DEMO_DIR/caddy.log"; exit 1; }

send() { # conversation-number turn
	local conv=$1 turn=$2 msgs
	msgs="{\"role\":\"user\",\"content\":\"Conversation $conv: explain topic $conv\"}"
	if [ "$turn" -gt 1 ]; then
		msgs="$msgs,{\"role\":\"assistant\",\"content\":\"Here is topic $conv.\"},{\"role\":\"user\",\"content\":\"and turn $turn?\"}"
	fi
	curl -sS -D - -o /dev/null "http://127.0.0.1:$SITE_PORT/v1/messages" \
		-H "x-api-key: demo-client-key" -H "content-type: application/json" \
		-d "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"system\":\"You are a demo.\",\"messages\":[$msgs]}" |
		tr -d '\r' | sed -n 's/^[Xx]-[Mm]ock-[Cc]redential: //p'
}

echo
echo "==> 9 new conversations (turn 1), spread by round robin:"
declare -A first
for c in $(seq 9); do
	first[$c]=$(send "$c" 1)
	printf '    conversation %d -> %s\n' "$c" "${first[$c]}"
done
echo
echo "==> turn 2 of each conversation stays on its credential (session affinity):"
sticky=0
for c in $(seq 9); do
	got=$(send "$c" 2)
	mark="same"
	[ "$got" = "${first[$c]}" ] && sticky=$((sticky + 1)) || mark="MOVED"
	printf '    conversation %d -> %s (%s)\n' "$c" "$got" "$mark"
done
echo
echo "==> requests per credential:"
for k in claude-1 claude-2 claude-3; do
	n=0
	for c in $(seq 9); do [ "${first[$c]}" = "$k" ] && n=$((n + 2)); done
	printf '    %s: %d\n' "$k" "$n"
done
echo
echo "$sticky of 9 conversations kept their credential on turn 2."

echo
echo "==> claude-2 starts answering 429 (retry-after: 120) at the upstream:"
curl -fsS -o /dev/null "$MOCK_URL/_mock/faults" -H "content-type: application/json" \
	-d '{"key":"sk-ant-demo-two","status":429,"headers":{"retry-after":"120"}}'
moved_ok=0
for c in $(seq 9); do
	[ "${first[$c]}" = "claude-2" ] || continue
	got=$(send "$c" 3)
	printf '    conversation %d (was on claude-2), turn 3 -> %s\n' "$c" "$got"
	[ -n "$got" ] && [ "$got" != "claude-2" ] && moved_ok=$((moved_ok + 1))
done
echo "    the client never saw the 429; claude-2 now rests for the hinted 120s:"
curl -fsS "http://127.0.0.1:$ADMIN_PORT/llm_proxy/pools/demo/auths" | tr '{' '\n' | grep -o '"model":"[^"]*","until":"[^"]*"' | sed 's/^/    cooldown /' | head -3
echo
echo "A wrong client key is refused:"
curl -sS "http://127.0.0.1:$SITE_PORT/v1/messages" -H "x-api-key: wrong" -d '{}' ; echo
[ "$sticky" -eq 9 ] && [ "$moved_ok" -eq 3 ]
