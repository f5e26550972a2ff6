#!/usr/bin/env bash
# Event-store append throughput: group-committed batches folded into host records.
#
# Prints events per second of wall time and of CPU time for several batch
# sizes, then runs the criterion benchmark, which also measures one commit per
# event (the write pattern of an output bot that commits every event).
# Usage: bench/store.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."

batches=60
[[ "${1:-}" == "--quick" ]] && batches=15

for batch in 1024 8192 32768; do
    n=$(( batches * 8192 / batch ))
    BATCH=$batch BATCHES=$n HOSTS=200000 \
        cargo bench -q -p takedown-store --bench throughput
done
cargo bench -q -p takedown-store --bench append
