#!/usr/bin/env bash
# DNS queries per second: the takedown sinkhole vs NSD serving the same
# sinkhole zone (apex and wildcard A/AAAA), on 127.0.0.1, measured with
# dnsperf in the same run.
#
# Usage: bench/sinkhole_dns.sh [SECONDS_PER_ROUND] [CLIENTS]   (env: ROUNDS=3)
# Needs: dnsperf, nsd (Debian: apt-get install dnsperf nsd), a Rust toolchain.
# Only loopback addresses are used; every run is bounded by SECONDS.
set -euo pipefail

SECONDS_RUN=${1:-10}
CLIENTS=${2:-8}
ROUNDS=${ROUNDS:-3}
OUTSTANDING=${OUTSTANDING:-200}
SERVER_THREADS=${SERVER_THREADS:-2}
PORT_TD=${PORT_TD:-15480}
PORT_NSD=${PORT_NSD:-15481}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in dnsperf nsd; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install dnsperf nsd" >&2; exit 1; }
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

ZONE=example-botnet.test
cat > "$WORK/sinkhole.toml" <<TOML
sensor = "bench"
[[dns]]
bind = "127.0.0.1:$PORT_TD"
tcp = false
udp_sockets = $SERVER_THREADS
[[families]]
family = "benchbot"
domains = ["$ZONE", "*.$ZONE"]
[dns_answer]
ipv4 = ["127.0.0.1"]
ipv6 = ["::1"]
ttl = 300
TOML

mkdir -p "$WORK/nsd"
cat > "$WORK/nsd/$ZONE.zone" <<ZONEFILE
\$ORIGIN $ZONE.
\$TTL 300
@ IN SOA ns.$ZONE. hostmaster.$ZONE. 1 3600 900 604800 300
@ IN NS ns.$ZONE.
@ IN A 127.0.0.1
@ IN AAAA ::1
* IN A 127.0.0.1
* IN AAAA ::1
ZONEFILE
cat > "$WORK/nsd/nsd.conf" <<NSDCONF
server:
    ip-address: 127.0.0.1@$PORT_NSD
    server-count: $SERVER_THREADS
    reuseport: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$WORK/nsd"
    pidfile: "$WORK/nsd/nsd.pid"
    database: ""
    zonelistfile: "$WORK/nsd/zone.list"
    xfrdfile: "$WORK/nsd/xfrd.state"
    xfrdir: "$WORK/nsd"
    logfile: "$WORK/nsd/nsd.log"
    verbosity: 1
    hide-version: yes
    minimal-responses: yes
    # Response rate limiting would throttle a benchmark from one address.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $ZONE
    zonefile: $ZONE.zone
NSDCONF

# A bot-like query mix: many distinct names below the seized domain, A and AAAA.
for i in $(seq 1 2000); do
    if (( i % 4 == 0 )); then t=AAAA; else t=A; fi
    echo "h$i.$ZONE $t"
done > "$WORK/queries.txt"

run_dnsperf() {
    dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -c "$CLIENTS" -q "$OUTSTANDING" \
        | tee "$WORK/dnsperf-$1.txt" >&2
    awk '/Queries per second/ {print $4}' "$WORK/dnsperf-$1.txt"
}

"$SERVER" --config "$WORK/sinkhole.toml" --threads 1 --seconds $((ROUNDS * SECONDS_RUN * 2 + 120)) \
    > "$WORK/td.out" &
TD_PID=$!
PIDS+=("$TD_PID")
nsd -d -c "$WORK/nsd/nsd.conf" &
NSD_PID=$!
PIDS+=("$NSD_PID")
for _ in $(seq 1 100); do grep -q ready "$WORK/td.out" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do grep -q "nsd started" "$WORK/nsd/nsd.log" 2>/dev/null && break; sleep 0.1; done

# Alternate the two servers round by round, so load from elsewhere on the
# machine hits both alike; report the median round of each.
TD_RATES=()
NSD_RATES=()
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r: takedown sinkhole (127.0.0.1:$PORT_TD)" >&2
    TD_RATES+=("$(run_dnsperf "$PORT_TD")")
    echo "== round $r: NSD $(nsd -v 2>&1 | head -n 1 | awk '{print $NF}') (127.0.0.1:$PORT_NSD)" >&2
    NSD_RATES+=("$(run_dnsperf "$PORT_NSD")")
done
kill -TERM "$TD_PID"
wait "$TD_PID" || true
TD_COUNTERS=$(tail -n 1 "$WORK/td.out")
kill -TERM "$NSD_PID"
wait "$NSD_PID" || true
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
TD_QPS=$(median "${TD_RATES[@]}")
NSD_QPS=$(median "${NSD_RATES[@]}")

echo
echo "dnsperf: ${CLIENTS} clients, ${OUTSTANDING} outstanding, ${ROUNDS} alternating rounds of ${SECONDS_RUN}s; servers: ${SERVER_THREADS} sockets/processes"
echo "takedown rounds: ${TD_RATES[*]}"
echo "NSD rounds:      ${NSD_RATES[*]}"
printf "takedown sinkhole: %12.0f q/s median   (%s)\n" "$TD_QPS" "$TD_COUNTERS"
printf "NSD:               %12.0f q/s median\n" "$NSD_QPS"
awk -v a="$TD_QPS" -v b="$NSD_QPS" 'BEGIN { printf "ratio takedown/NSD: %.2f\n", a / b }'
