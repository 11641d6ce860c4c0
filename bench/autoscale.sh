#!/usr/bin/env bash
# The highest launch-mix rate held with a fixed deployment of two instances
# in eastus and with the autoscaler (two to six), side by side in one run
# of one deployment: bench/autoscale.yaml's experiments through
# `contoso verify`. A rate is held when no request failed (429s included).
# Usage: bench/autoscale.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go run ./cmd/contoso verify --profile full --file bench/autoscale.yaml --log-level error --out "$out.json" | tee "$out"
echo
echo "== rates held (no failed request, 429s included)"
# The summary table's rows: experiment, expectation, measured, verdict,
# separated by two spaces or more.
grep -E '^[a-z0-9-]+ +no failed request' "$out" |
  awk -F'  +' '{ printf "%-22s %-50s %s\n", $1, $3, ($4 == "pass" ? "held" : "not held") }'
rm -f "$out.json"
