#!/usr/bin/env bash
# Benchmarks of SPEC section 11 (see BENCHMARKS.md). Usage: make bench
# (or scripts/bench.sh). Builds into bench/.work/ (ignored), writes
# bench/results/latest.txt and bench/results/*.json.
#
#  1. Go micro-benchmarks of internal/session/ and internal/selector/ (extraction speed,
#     selection at 10,000 credentials, memory of 1,000,000 bindings).
#  2. Overhead: the mock upstream, one Caddy with llm_proxy (1 credential;
#     3 credentials with session affinity) and one Caddy with plain
#     reverse_proxy to the same mock; the same load alternates between them
#     for several rounds, non-streaming and streaming, at concurrency 1
#     (latency) and at a higher concurrency (throughput); CPU per request
#     from /proc/<pid>/stat of each Caddy.
#  3. Prompt-cache hit rate: 4 credentials, session affinity on vs off
#     (round robin), the same multi-session workload replayed on a reset mock.
#  4. CPU profiles of both Caddys under load (admin /debug/pprof): llm_proxy
#     with 1 credential, with 3 credentials and affinity, reverse_proxy.
#
# Knobs (environment): BENCH_BENCHTIME (200ms), BENCH_ROUNDS (7),
# BENCH_LAT_CONVS (150: conversations per latency run, x6 turns),
# BENCH_THR_CONVS (1000: per throughput run), BENCH_THR_CONC (16),
# BENCH_CACHE_CONVS (200), BENCH_PROFILE (1; 0 skips profiling),
# BENCH_MICRO (1; 0 skips the Go micro-benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=bench/.work
RESULTS=bench/results
BENCHTIME=${BENCH_BENCHTIME:-200ms}
ROUNDS=${BENCH_ROUNDS:-7}
LAT_CONVS=${BENCH_LAT_CONVS:-150}
THR_CONVS=${BENCH_THR_CONVS:-1000}
THR_CONC=${BENCH_THR_CONC:-16}
CACHE_CONVS=${BENCH_CACHE_CONVS:-200}
PROFILE=${BENCH_PROFILE:-1}
MICRO=${BENCH_MICRO:-1}
CLIENT_KEY=bench-client-key
KEYS=(sk-bench-key-1 sk-bench-key-2 sk-bench-key-3 sk-bench-key-4)

rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS"
WORK_ABS=$(cd "$WORK" && pwd)
OUT=$RESULTS/latest.txt
exec > >(tee "$OUT") 2>&1

pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$rc" -ne 0 ]; then
		echo
		echo "!! bench FAILED (exit $rc); logs in $WORK/"
		for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 20 "$f"; }; done
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s  [load average: %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
fail() { echo "!! $*" >&2; exit 1; }

step "machine"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:     $(nproc)"
echo "cpu:       $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "memory:    $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo)"
echo "kernel:    $(uname -sr)"
echo "go:        $(go version)"
echo "loadavg:   $(cat /proc/loadavg)"

step "building caddy (with llm_proxy), mockllm and llmload into $WORK"
go build -o "$WORK/caddy" ./cmd/caddy
go build -o "$WORK/mockllm" ./cmd/mockllm
go build -o "$WORK/llmload" ./bench/cmd/llmload
LOAD=$WORK/llmload

if [ "$MICRO" = 1 ]; then
	step "Go micro-benchmarks (internal/session/, internal/selector/; -benchtime $BENCHTIME)"
	go test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" -count 1 ./internal/session/ ./internal/selector/ | tee "$WORK/micro.txt"
	grep -E '^(Benchmark|ok|PASS|FAIL)' "$WORK/micro.txt" >"$RESULTS/micro.txt"
fi

step "starting the mock upstream"
"$WORK/mockllm" -listen 127.0.0.1:0 -quiet -max-recorded 0 \
	-keys "k1=${KEYS[0]},k2=${KEYS[1]},k3=${KEYS[2]},k4=${KEYS[3]}" >"$WORK/mock.log" 2>&1 &
pids+=($!)
MOCK_URL=
for _ in $(seq 100); do
	MOCK_URL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$WORK/mock.log" | head -1)
	[ -n "$MOCK_URL" ] && break
	sleep 0.1
done
[ -n "$MOCK_URL" ] || fail "mock did not start"
MOCK_HOSTPORT=${MOCK_URL#http://}
echo "mock at $MOCK_URL"

auth_block() { # id key-index
	cat <<EOF
		auth $1 {
			provider claude
			api_key {env.BENCH_KEY_$2}
			base_url $MOCK_URL
		}
EOF
}

write_llm_caddyfile() { # admin l1 l3 con coff
	{
		cat <<EOF
{
	admin 127.0.0.1:$1
	persist_config off
	auto_https off
	storage file_system {
		root $WORK_ABS/storage
	}
}

# llm_proxy, one credential, no affinity
http://127.0.0.1:$2 {
	llm_proxy {
		pool one
		rescan_interval 0
$(auth_block k1 1)
		access {
			api_keys $CLIENT_KEY
		}
	}
}

# llm_proxy, three credentials, session affinity on
http://127.0.0.1:$3 {
	llm_proxy {
		pool three
		rescan_interval 0
$(auth_block k1 1)
$(auth_block k2 2)
$(auth_block k3 3)
		routing {
			session_affinity on
		}
		access {
			api_keys $CLIENT_KEY
		}
	}
}

# cache-hit runs: four credentials, affinity on
http://127.0.0.1:$4 {
	llm_proxy {
		pool cache_on
		rescan_interval 0
$(auth_block k1 1)
$(auth_block k2 2)
$(auth_block k3 3)
$(auth_block k4 4)
		routing {
			strategy round_robin
			session_affinity on
		}
		access {
			api_keys $CLIENT_KEY
		}
	}
}

# cache-hit runs: four credentials, affinity off (round robin)
http://127.0.0.1:$5 {
	llm_proxy {
		pool cache_off
		rescan_interval 0
$(auth_block k1 1)
$(auth_block k2 2)
$(auth_block k3 3)
$(auth_block k4 4)
		routing {
			strategy round_robin
			session_affinity off
		}
		access {
			api_keys $CLIENT_KEY
		}
	}
}
EOF
	} >"$WORK/llm.Caddyfile"
}

write_rp_caddyfile() { # admin port
	cat >"$WORK/rp.Caddyfile" <<EOF
{
	admin 127.0.0.1:$1
	persist_config off
	auto_https off
	storage file_system {
		root $WORK_ABS/storage-rp
	}
}

# plain reverse_proxy to the same mock, with the credential set by header_up
http://127.0.0.1:$2 {
	reverse_proxy $MOCK_HOSTPORT {
		header_up X-Api-Key ${KEYS[0]}
	}
}
EOF
}

# start_caddy NAME CADDYFILE ADMINPORT: starts caddy, sets CADDY_PID; returns
# non-zero if it did not come up (for example a port was taken).
start_caddy() {
	local name=$1 cfg=$2 admin=$3
	XDG_CONFIG_HOME=$WORK_ABS/xdg-$name XDG_DATA_HOME=$WORK_ABS/xdg-$name \
		BENCH_KEY_1=${KEYS[0]} BENCH_KEY_2=${KEYS[1]} BENCH_KEY_3=${KEYS[2]} BENCH_KEY_4=${KEYS[3]} \
		"$WORK/caddy" run --config "$cfg" --adapter caddyfile >"$WORK/$name.log" 2>&1 &
	CADDY_PID=$!
	for _ in $(seq 100); do
		if ! kill -0 "$CADDY_PID" 2>/dev/null; then
			wait "$CADDY_PID" 2>/dev/null || true
			return 1
		fi
		if curl -fsS "http://127.0.0.1:$admin/config/" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	kill "$CADDY_PID" 2>/dev/null || true
	wait "$CADDY_PID" 2>/dev/null || true
	return 1
}

step "starting caddy with llm_proxy and caddy with reverse_proxy"
started=0
for attempt in 1 2 3 4 5; do
	read -r A_ADMIN L1 L3 CON COFF B_ADMIN RP < <("$LOAD" freeports 7)
	write_llm_caddyfile "$A_ADMIN" "$L1" "$L3" "$CON" "$COFF"
	write_rp_caddyfile "$B_ADMIN" "$RP"
	if start_caddy llm "$WORK/llm.Caddyfile" "$A_ADMIN"; then
		A_PID=$CADDY_PID
		pids+=("$A_PID")
		if start_caddy rp "$WORK/rp.Caddyfile" "$B_ADMIN"; then
			B_PID=$CADDY_PID
			pids+=("$B_PID")
			started=1
			break
		fi
		kill "$A_PID" 2>/dev/null || true
		wait "$A_PID" 2>/dev/null || true
	fi
	echo "caddy did not start (attempt $attempt; ports may be taken), retrying with new ports"
	tail -n 5 "$WORK"/llm.log "$WORK"/rp.log 2>/dev/null || true
done
[ "$started" = 1 ] || fail "could not start the Caddy processes"
echo "llm_proxy caddy pid $A_PID (admin 127.0.0.1:$A_ADMIN): 1 cred :$L1, 3 creds+affinity :$L3, cache on :$CON, cache off :$COFF"
echo "reverse_proxy caddy pid $B_PID (admin 127.0.0.1:$B_ADMIN): :$RP"

# Smoke test: each endpoint answers through the mock.
for port in "$L1" "$L3" "$CON" "$COFF" "$RP"; do
	"$LOAD" run -url "http://127.0.0.1:$port" -key "$CLIENT_KEY" -conversations 2 -turns 2 -concurrency 1 >"$WORK/smoke-$port.txt" ||
		{ cat "$WORK/smoke-$port.txt"; fail "smoke test of port $port failed"; }
done

TARGETS=(-target "llm_proxy=http://127.0.0.1:$L1@$A_PID"
	-target "llm_proxy_3cred_aff=http://127.0.0.1:$L3@$A_PID"
	-target "reverse_proxy=http://127.0.0.1:$RP@$B_PID")

step "overhead, latency profile: concurrency 1, $LAT_CONVS conversations x 6 turns per run, $ROUNDS rounds"
"$LOAD" compare "${TARGETS[@]}" -baseline reverse_proxy -rounds "$ROUNDS" -modes nonstream,stream \
	-key "$CLIENT_KEY" -concurrency 1 -conversations "$LAT_CONVS" -turns 6 -warmup 300 -seed 100 \
	-label "overhead, concurrency 1" -json "$RESULTS/overhead-c1.json"

step "overhead, throughput profile: concurrency $THR_CONC, $THR_CONVS conversations x 6 turns per run, $ROUNDS rounds"
"$LOAD" compare "${TARGETS[@]}" -baseline reverse_proxy -rounds "$ROUNDS" -modes nonstream,stream \
	-key "$CLIENT_KEY" -concurrency "$THR_CONC" -conversations "$THR_CONVS" -turns 6 -warmup 600 -seed 200 \
	-label "overhead, concurrency $THR_CONC" -json "$RESULTS/overhead-c$THR_CONC.json"

step "prompt-cache hit rate: 4 credentials, $CACHE_CONVS conversations x 6 turns, concurrency 16, think time 0-20ms"
"$LOAD" run -url "http://127.0.0.1:$CON" -key "$CLIENT_KEY" -mock "$MOCK_URL" -mock-reset \
	-think 20ms -conversations "$CACHE_CONVS" -turns 6 -concurrency 16 -seed 300 -min-cache-hit 0.99 \
	-label "affinity on (metadata.user_id session)" -json "$RESULTS/cache-affinity-on.json"
"$LOAD" run -url "http://127.0.0.1:$CON" -key "$CLIENT_KEY" -mock "$MOCK_URL" -mock-reset \
	-think 20ms -conversations "$CACHE_CONVS" -turns 6 -concurrency 16 -seed 300 -session none -min-cache-hit 0.99 \
	-label "affinity on (no session ID: message-hash fallback)" -json "$RESULTS/cache-affinity-on-hash.json"
"$LOAD" run -url "http://127.0.0.1:$COFF" -key "$CLIENT_KEY" -mock "$MOCK_URL" -mock-reset \
	-think 20ms -conversations "$CACHE_CONVS" -turns 6 -concurrency 16 -seed 300 \
	-label "affinity off (round robin)" -json "$RESULTS/cache-affinity-off.json"
"$LOAD" run -url "http://127.0.0.1:$COFF" -key "$CLIENT_KEY" -mock "$MOCK_URL" -mock-reset \
	-think 20ms -conversations "$CACHE_CONVS" -turns 2 -concurrency 16 -seed 300 \
	-label "affinity off (round robin), 2 turns: the 1/N case" -json "$RESULTS/cache-affinity-off-2turns.json"

if [ "$PROFILE" = 1 ]; then
	for which in llm llm3aff rp; do
		case $which in
		llm) port=$L1 admin=$A_ADMIN ;;
		llm3aff) port=$L3 admin=$A_ADMIN ;;
		rp) port=$RP admin=$B_ADMIN ;;
		esac
		step "CPU profile of caddy ($which) under load: 10s, concurrency $THR_CONC, non-streaming"
		"$LOAD" run -url "http://127.0.0.1:$port" -key "$CLIENT_KEY" -concurrency "$THR_CONC" \
			-conversations 100000 -turns 6 -duration 12s -seed 400 >"$WORK/profile-load-$which.txt" &
		loadpid=$!
		sleep 1
		curl -fsS -o "$WORK/cpu-$which.pprof" "http://127.0.0.1:$admin/debug/pprof/profile?seconds=10"
		wait "$loadpid" || fail "profiling load against $which failed"
		go tool pprof -top -nodecount 45 "$WORK/caddy" "$WORK/cpu-$which.pprof" 2>/dev/null >"$RESULTS/profile-$which-top.txt"
		go tool pprof -top -cum -nodecount 60 "$WORK/caddy" "$WORK/cpu-$which.pprof" 2>/dev/null >"$RESULTS/profile-$which-cum.txt"
		head -n 30 "$RESULTS/profile-$which-top.txt"
		grep -E 'llmproxy' "$RESULTS/profile-$which-cum.txt" | head -n 25 || true
	done
fi

step "done"
echo "results: $OUT and $RESULTS/*.json (see BENCHMARKS.md)"
