#!/usr/bin/env bash
# Event-store append throughput: group-committed batches folded into host records.
#
# Prints events per second of wall time and of CPU time for several batch
# sizes, then runs the criterion benchmark, which also measures one commit per
# event (the write pattern of an output bot that commits every event).
# With --postgres it also measures the PostgreSQL store on a throwaway local
# server with PostgreSQL's durable defaults (fsync and synchronous commit on,
# as SQLite runs with synchronous=FULL), at the same batch sizes.
# Usage: bench/store.sh [--quick] [--postgres]
set -euo pipefail
cd "$(dirname "$0")/.."

batches=60
postgres=0
for arg in "$@"; do
    case "$arg" in
        --quick) batches=15 ;;
        --postgres) postgres=1 ;;
        *) echo "usage: bench/store.sh [--quick] [--postgres]" >&2; exit 2 ;;
    esac
done

if (( postgres )); then
    pg_dir=$(mktemp -d /tmp/takedown-pg-bench.XXXXXX)
    trap 'scripts/postgres-test-server.sh stop "$pg_dir" >/dev/null 2>&1 || true' EXIT
    eval "$(TAKEDOWN_PG_DIR=$pg_dir TAKEDOWN_PG_DURABLE=1 scripts/postgres-test-server.sh)"
    for batch in 1024 8192 32768; do
        n=$(( batches * 8192 / batch ))
        STORE_URL="$TAKEDOWN_TEST_POSTGRES" BATCH=$batch BATCHES=$n HOSTS=200000 \
            cargo bench -q -p takedown-store --bench throughput
    done
fi

for batch in 1024 8192 32768; do
    n=$(( batches * 8192 / batch ))
    BATCH=$batch BATCHES=$n HOSTS=200000 \
        cargo bench -q -p takedown-store --bench throughput
done
cargo bench -q -p takedown-store --bench append
