#!/usr/bin/env bash
# HTTP check-ins per second, recorded durably: the `takedown sinkhole` binary
# (listeners -> ingest pipeline -> SQLite store) vs nginx (access_log on),
# both serving an empty 200 on 127.0.0.1, measured with wrk in the same run.
#
# Each round starts takedown on a fresh data directory, runs wrk against it,
# stops it with SIGTERM (which flushes the last batch) and counts the events
# in the store, so the takedown figure is check-ins that reached disk, not
# requests answered. A secondary row runs the `bench_server` example, which
# only drains the listeners' event channel (no pipeline, no store).
#
# Usage: bench/sinkhole_http.sh [SECONDS_PER_ROUND] [CONNECTIONS]
#   env: ROUNDS=3, CHANNEL_ROW=1 (0 skips the channel-only row),
#        SERVER_THREADS=2, WRK_THREADS=1
# Needs: wrk, nginx, sqlite3 (Debian: apt-get install wrk nginx sqlite3),
# a Rust toolchain. Only loopback addresses are used; every run is bounded.
set -euo pipefail

SECONDS_RUN=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
CHANNEL_ROW=${CHANNEL_ROW:-1}
WRK_THREADS=${WRK_THREADS:-1}
SERVER_THREADS=${SERVER_THREADS:-2}
PORT_NGINX=${PORT_NGINX:-18481}
PORT_CHAN=${PORT_CHAN:-18482}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in wrk nginx sqlite3; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx sqlite3" >&2; exit 1; }
done

# The store lives under the system temporary directory; point TMPDIR at the
# disk you want measured (it must not be tmpfs, or fsync costs nothing).
WORK=$(mktemp -d)
PIDS=()
TD_PID=""
cleanup() {
    for p in "${PIDS[@]}" $TD_PID; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building takedown and bench_server (release)..." >&2
(cd "$ROOT" && cargo build --quiet --release -p takedown)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TAKEDOWN="$TARGET/release/takedown"
if [ "$CHANNEL_ROW" = 1 ]; then
    (cd "$ROOT" && cargo build --quiet --release -p takedown-sinkhole --example bench_server)
fi
CHAN_SERVER="$TARGET/release/examples/bench_server"

# The same listener settings for both takedown rows; the durable one binds
# port 0 and reads the chosen address from the `listening http ADDR` line.
sinkhole_toml() {
    cat <<TOML
sensor = "bench"
io_threads = $SERVER_THREADS
[[http]]
bind = "127.0.0.1:$1"
[[families]]
family = "benchbot"
domains = ["*.example-botnet.test"]
[limits]
max_connections = 10000
max_requests_per_connection = 4294967295
TOML
}
sinkhole_toml 0 > "$WORK/durable.toml"
# The pipeline's defaults (batches of up to 8192 events, 250 ms flush window),
# spelled out so the measured settings are on record.
cat >> "$WORK/durable.toml" <<TOML
[ingest]
batch_size = 8192
flush_window_ms = 250
linger_ms = 5
TOML
sinkhole_toml "$PORT_CHAN" > "$WORK/channel.toml"

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

# Runs wrk against ADDR; sets WRK_RPS, WRK_REQS and WRK_SECS (wrk's own
# measured duration), and WRK_ERRS (socket errors and non-2xx answers).
run_wrk() {
    local out="$WORK/wrk.txt"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECONDS_RUN}s" -s "$WORK/checkin.lua" "http://$1/" > "$out"
    cat "$out" >&2
    WRK_RPS=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$out")
    WRK_REQS=$(awk '/requests in/ {print $1}' "$out")
    WRK_SECS=$(awk '/requests in/ {
        d = $4; sub(/,$/, "", d)
        if (d ~ /ms$/) { sub(/ms$/, "", d); d /= 1000 }
        else if (d ~ /m$/) { sub(/m$/, "", d); d *= 60 }
        else { sub(/s$/, "", d) }
        print d }' "$out")
    WRK_ERRS=$(awk '/Socket errors|Non-2xx/ {sub(/^ +/, ""); printf "%s; ", $0}' "$out")
}

# One durable round: fresh data directory, takedown sinkhole, wrk, SIGTERM,
# then count what the store holds. Sets STORED, COUNTED, DRAIN_SECS.
run_durable() {
    local r=$1 data="$WORK/data-$r" out="$WORK/td-$r.out" err="$WORK/td-$r.err"
    mkdir -p "$data"
    : > "$out"
    TAKEDOWN_LOG=info "$TAKEDOWN" --data "$data" sinkhole --config "$WORK/durable.toml" > "$out" 2> "$err" &
    TD_PID=$!
    local pid=$TD_PID addr=""
    for _ in $(seq 1 200); do
        addr=$(awk '$1 == "listening" && $2 == "http" {print $3; exit}' "$out")
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$err" >&2; echo "takedown sinkhole exited early" >&2; exit 1; }
        sleep 0.05
    done
    [ -n "$addr" ] || { cat "$err" >&2; echo "takedown sinkhole never listened" >&2; exit 1; }
    echo "== round $r: takedown sinkhole -> ingest -> SQLite ($addr)" >&2
    run_wrk "$addr"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    t1=$(date +%s.%N)
    TD_PID=""
    [ "$rc" = 0 ] || { cat "$err" >&2; echo "takedown sinkhole exited with $rc" >&2; exit 1; }
    DRAIN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    # Events live in encoded segments of n events each; event_counts is the
    # per-day tally kept in the same transactions, a cross-check.
    STORED=$(sqlite3 "$data/takedown.db" "SELECT coalesce(sum(n), 0) FROM event_segments")
    COUNTED=$(sqlite3 "$data/takedown.db" "SELECT coalesce(sum(count), 0) FROM event_counts")
    du -sh "$data" | awk '{printf "store size: %s\n", $1}' >&2
    grep -h "Sinkhole stopped" "$err" >&2 || true
    rm -rf "$data"
}

nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$PORT_NGINX"
if [ "$CHANNEL_ROW" = 1 ]; then
    "$CHAN_SERVER" --config "$WORK/channel.toml" --threads 1 \
        --seconds $((ROUNDS * (SECONDS_RUN * 3 + 30) + 120)) > "$WORK/chan.out" &
    CHAN_PID=$!
    PIDS+=("$CHAN_PID")
    wait_port "$PORT_CHAN"
fi
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/.*\///')

# Alternate the servers round by round, and rotate which goes first, so
# load from elsewhere on the machine and any warm-up effect hit all of them
# alike; report the median round of each.
declare -A TD_RPS TD_DUR TD_DUR_DRAIN NG_RPS NG_LOG CHAN_RPS
round_takedown() {
    run_durable "$1"
    TD_RPS[$1]=$WRK_RPS
    TD_DUR[$1]=$(awk -v n="$STORED" -v s="$WRK_SECS" 'BEGIN { printf "%.0f", n / s }')
    TD_DUR_DRAIN[$1]=$(awk -v n="$STORED" -v s="$WRK_SECS" -v d="$DRAIN_SECS" 'BEGIN { printf "%.0f", n / (s + d) }')
    # Stored may exceed answered by up to one request per connection: those
    # wrk sent but stopped waiting for when its clock ran out.
    echo "answered=$WRK_REQS stored=$STORED event_counts=$COUNTED drain=${DRAIN_SECS}s ${WRK_ERRS}" >&2
    [ "$STORED" = "$COUNTED" ] || echo "warning: event_segments ($STORED) and event_counts ($COUNTED) disagree" >&2
}
round_nginx() {
    echo "== round $1: nginx $NGINX_VERSION with access_log (127.0.0.1:$PORT_NGINX)" >&2
    local before after
    before=$(wc -l < "$WORK/nginx/logs/access.log")
    run_wrk "127.0.0.1:$PORT_NGINX"
    sleep 0.2
    after=$(wc -l < "$WORK/nginx/logs/access.log")
    NG_RPS[$1]=$WRK_RPS
    NG_LOG[$1]=$(awk -v n="$((after - before))" -v s="$WRK_SECS" 'BEGIN { printf "%.0f", n / s }')
    echo "answered=$WRK_REQS logged=$((after - before)) ${WRK_ERRS}" >&2
}
round_channel() {
    echo "== round $1: takedown listeners, channel drained only (127.0.0.1:$PORT_CHAN)" >&2
    run_wrk "127.0.0.1:$PORT_CHAN"
    CHAN_RPS[$1]=$WRK_RPS
}
SERVERS=(takedown nginx)
[ "$CHANNEL_ROW" = 1 ] && SERVERS+=(channel)
N=${#SERVERS[@]}
TABLE=()
for r in $(seq 1 "$ROUNDS"); do
    for i in $(seq 0 $((N - 1))); do
        "round_${SERVERS[$(( (r - 1 + i) % N ))]}" "$r"
    done
    TABLE+=("| $r | ${TD_DUR[$r]} | ${TD_RPS[$r]} | ${NG_LOG[$r]} | ${NG_RPS[$r]} | ${CHAN_RPS[$r]:--} |")
done
if [ "$CHANNEL_ROW" = 1 ]; then
    kill -TERM "$CHAN_PID"
    wait "$CHAN_PID" || true
    CHAN_COUNTERS=$(tail -n 1 "$WORK/chan.out")
fi
kill -QUIT "$NGINX_PID"
wait "$NGINX_PID" || true

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
M_TD_DUR=$(median "${TD_DUR[@]}")
M_TD_DUR_DRAIN=$(median "${TD_DUR_DRAIN[@]}")
M_TD_RPS=$(median "${TD_RPS[@]}")
M_NG_LOG=$(median "${NG_LOG[@]}")
M_NG_RPS=$(median "${NG_RPS[@]}")
M_CHAN="-"
[ "$CHANNEL_ROW" = 1 ] && M_CHAN=$(median "${CHAN_RPS[@]}")

echo
echo "wrk: ${WRK_THREADS} thread(s), ${CONNS} connections, ${ROUNDS} alternating rounds of ${SECONDS_RUN}s;" \
    "servers: ${SERVER_THREADS} I/O threads/workers; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | takedown stored/s | takedown req/s | nginx logged/s | nginx req/s | channel-only req/s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${TABLE[@]}"
echo "| **median** | **$M_TD_DUR** | **$M_TD_RPS** | **$M_NG_LOG** | **$M_NG_RPS** | **$M_CHAN** |"
echo
echo "takedown stored/s counting the SIGTERM flush time too (median): $M_TD_DUR_DRAIN"
[ "$CHANNEL_ROW" = 1 ] && echo "channel-only server: $CHAN_COUNTERS"
awk -v a="$M_TD_DUR" -v b="$M_NG_LOG" 'BEGIN { printf "ratio takedown stored/s / nginx logged/s: %.2f\n", a / b }'
awk -v a="$M_TD_RPS" -v b="$M_NG_RPS" 'BEGIN { printf "ratio takedown req/s / nginx req/s:       %.2f\n", a / b }'
