#!/usr/bin/env bash
# HTTP check-ins per second: the takedown sinkhole vs nginx (access_log on),
# both serving an empty 200 on 127.0.0.1, measured with wrk in the same run.
#
# Usage: bench/sinkhole_http.sh [SECONDS_PER_ROUND] [CONNECTIONS]   (env: ROUNDS=3)
# Needs: wrk, nginx (Debian: apt-get install wrk nginx), a Rust toolchain.
# Only loopback addresses are used; every run is bounded by SECONDS.
set -euo pipefail

SECONDS_RUN=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-1}
SERVER_THREADS=${SERVER_THREADS:-2}
PORT_TD=${PORT_TD:-18480}
PORT_NGINX=${PORT_NGINX:-18481}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building bench_server (release)..." >&2
(cd "$ROOT" && cargo build --quiet --release -p takedown-sinkhole --example bench_server)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER="$TARGET/release/examples/bench_server"

cat > "$WORK/sinkhole.toml" <<TOML
sensor = "bench"
io_threads = $SERVER_THREADS
[[http]]
bind = "127.0.0.1:$PORT_TD"
[[families]]
family = "benchbot"
domains = ["*.example-botnet.test"]
[limits]
max_connections = 10000
max_requests_per_connection = 4294967295
TOML

mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes $SERVER_THREADS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/logs/access.log combined;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT_NGINX;
        location / { return 200 ""; }
    }
}
NGINX

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on port $1" >&2
    return 1
}

# wrk's Lua hook sends a bot-like check-in to every server alike.
cat > "$WORK/checkin.lua" <<'LUA'
wrk.method = "GET"
wrk.path = "/gate.php?id=0123456789abcdef&v=2"
wrk.headers["Host"] = "c2.example-botnet.test"
wrk.headers["User-Agent"] = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"
LUA

run_wrk() {
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECONDS_RUN}s" -s "$WORK/checkin.lua" "http://127.0.0.1:$1/" \
        | tee "$WORK/wrk-$1.txt" >&2
    awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$1.txt"
}

"$SERVER" --config "$WORK/sinkhole.toml" --threads 1 --seconds $((ROUNDS * SECONDS_RUN * 2 + 120)) \
    > "$WORK/td.out" &
TD_PID=$!
PIDS+=("$TD_PID")
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$PORT_TD"
wait_port "$PORT_NGINX"

# Alternate the two servers round by round, so load from elsewhere on the
# machine hits both alike; report the median round of each.
TD_RATES=()
NGINX_RATES=()
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r: takedown sinkhole (127.0.0.1:$PORT_TD)" >&2
    TD_RATES+=("$(run_wrk "$PORT_TD")")
    echo "== round $r: nginx $(nginx -v 2>&1 | sed 's/.*\///') with access_log (127.0.0.1:$PORT_NGINX)" >&2
    NGINX_RATES+=("$(run_wrk "$PORT_NGINX")")
done
kill -TERM "$TD_PID"
wait "$TD_PID" || true
TD_COUNTERS=$(tail -n 1 "$WORK/td.out")
kill -QUIT "$NGINX_PID"
wait "$NGINX_PID" || true
LOGGED=$(wc -l < "$WORK/nginx/logs/access.log")
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
TD_RPS=$(median "${TD_RATES[@]}")
NGINX_RPS=$(median "${NGINX_RATES[@]}")

echo
echo "wrk: ${WRK_THREADS} thread(s), ${CONNS} connections, ${ROUNDS} alternating rounds of ${SECONDS_RUN}s; servers: ${SERVER_THREADS} threads/workers"
echo "takedown rounds: ${TD_RATES[*]}"
echo "nginx rounds:    ${NGINX_RATES[*]}"
printf "takedown sinkhole: %12.0f req/s median   (%s)\n" "$TD_RPS" "$TD_COUNTERS"
printf "nginx access_log:  %12.0f req/s median   (access.log lines=%s)\n" "$NGINX_RPS" "$LOGGED"
awk -v a="$TD_RPS" -v b="$NGINX_RPS" 'BEGIN { printf "ratio takedown/nginx: %.2f\n", a / b }'
