#!/usr/bin/env bash
# End-to-end import throughput: `takedown import` against IntelMQ, same report, same run.
#
#   takedown: parse a Shadowserver event4_sinkhole_http CSV, enrich every
#             source address (AS, prefix, country from the public range
#             tables), append the events and fold host records in the store.
#   IntelMQ:  its Shadowserver parser, deduplicator (Redis) and ASN lookup
#             expert (pyasn, over a database made from the same AS ranges),
#             in library mode, over the first PEER_ROWS rows of the same file.
#
# Usage: bench/import.sh [ROWS] [PEER_ROWS] [WORK_DIR]
# Defaults: 500000 rows for takedown, 20000 for IntelMQ (its rate is per
# event, so a prefix measures it fairly and keeps the run short), work dir
# /tmp/takedown-import-bench. Needs npm (enrichment data), apt (redis-server)
# and PyPI (intelmq, pyasn into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-500000}"
peer_rows="${2:-20000}"
work="${3:-/tmp/takedown-import-bench}"
mkdir -p "$work"

# The peer's environment.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import intelmq, pyasn, redis' 2>/dev/null; then
  .venv/bin/pip install --quiet 'intelmq==3.5.*' pyasn redis
fi
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# Enrichment data, shared with bench/enrich.sh when present.
data="$work/data"
if [ -f /tmp/takedown-enrich-bench/data/enrich/asn-ipv4.csv ] && [ ! -e "$data/enrich" ]; then
  mkdir -p "$data" && ln -s /tmp/takedown-enrich-bench/data/enrich "$data/enrich"
fi
if [ ! -f "$data/enrich/asn-ipv4.csv" ]; then
  scripts/fetch-enrichment.sh "$data"
fi

# The report: source addresses drawn from real AS ranges.
report="$work/event4_sinkhole_http-$rows.csv"
if [ ! -f "$report" ]; then
  python3 bench/gen_shadowserver.py --rows "$rows" --ranges "$data/enrich/asn-ipv4.csv" >"$report"
fi

# IntelMQ's offline setup: the Shadowserver schema and a pyasn database.
root="$work/intelmq"
mkdir -p "$root/var/lib/bots" "$root/var/log" "$root/etc"
install -m 644 ../shared/reference/shadowserver/intelmq.json "$root/var/lib/bots/shadowserver-schema.json"
ipasn="$root/ipasn.dat"
if [ ! -f "$ipasn" ]; then
  .venv/bin/python - "$data/enrich/asn-ipv4.csv" "$ipasn" <<'PY'
import csv, ipaddress, sys
with open(sys.argv[1], newline="") as f, open(sys.argv[2], "w") as out:
    out.write("; IP-ASN32-DAT from the takedown enrichment ranges\n")
    for row in csv.reader(f):
        try:
            a, b, asn = ipaddress.IPv4Address(row[0]), ipaddress.IPv4Address(row[1]), int(row[2])
        except (ValueError, IndexError):
            continue
        for net in ipaddress.summarize_address_range(a, b):
            out.write(f"{net}\t{asn}\n")
PY
fi
sock="$root/redis.sock"
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
  --daemonize yes --pidfile "$root/redis.pid" --logfile "$root/redis.log"
trap 'kill "$(cat "$root/redis.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

cargo build --quiet --release -p takedown
bin="${CARGO_TARGET_DIR:-target}/release/takedown"

# The first start after the enrichment data changes builds the lookup-table
# cache in the data's directory (about 1 s more); build it now, so the timed
# run measures the steady start every later import gets.
warm="$work/warm"
rm -rf "$warm" && mkdir -p "$warm"
ln -s "$(readlink -f "$data/enrich")" "$warm/enrich"
head -n 101 "$report" >"$warm/head.csv"
"$bin" --data "$warm" import --quiet --format shadowserver "$warm/head.csv" 2>/dev/null

# takedown: a fresh store each run, the enrichment data linked in.
run="$work/run"
rm -rf "$run" && mkdir -p "$run"
ln -s "$(readlink -f "$data/enrich")" "$run/enrich"
echo "== takedown import: $rows rows"
/usr/bin/time -f 'takedown-time %e %U %S' "$bin" --data "$run" import --quiet \
  --format shadowserver "$report" 2>"$work/takedown.err"
grep -E '^imported' "$work/takedown.err"
read -r td_wall td_user td_sys < <(sed -n 's/^takedown-time //p' "$work/takedown.err")

echo "== IntelMQ parser + deduplicator + ASN expert: $peer_rows rows"
line=$(INTELMQ_ROOT_DIR="$root" .venv/bin/python bench/import_intelmq.py \
  "$report" "$peer_rows" "$sock" "$ipasn" | grep '^intelmq')
echo "$line"
read -r _ _ imq_events imq_wall imq_cpu _ <<<"$line"

python3 - "$rows" "$td_wall" "$td_user" "$td_sys" "$imq_events" "$imq_wall" "$imq_cpu" <<'PY'
import sys
rows, td_wall, td_user, td_sys, imq_n, imq_wall, imq_cpu = sys.argv[1:]
td_wall_rate = int(rows) / float(td_wall)
td_cpu_rate = int(rows) / (float(td_user) + float(td_sys))
imq_wall_rate = int(imq_n) / float(imq_wall)
imq_cpu_rate = int(imq_n) / float(imq_cpu)
print(f"takedown: {td_wall_rate:,.0f} events/s wall, {td_cpu_rate:,.0f} events/CPU-s")
print(f"IntelMQ:  {imq_wall_rate:,.0f} events/s wall, {imq_cpu_rate:,.0f} events/CPU-s (Redis excluded)")
print(f"ratio:    {td_wall_rate / imq_wall_rate:,.1f}x wall, {td_cpu_rate / imq_cpu_rate:,.1f}x CPU")
PY
