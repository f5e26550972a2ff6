#!/usr/bin/env bash
# Runs every test in the workspace: unit, integration, property and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
