#!/usr/bin/env bash
# Finds the highest request rate `contoso up` (three regions, simulated
# latency on) sustains through the edge with p99 under 100 ms and errors
# under 0.1 %, stepping the launch-day load up, and records the peak RSS of
# `up` under each step. p99 is given for all flows, for the read flows
# (catalog and product pages) and for checkout (three quorum writes across
# the simulated regions).
# Usage: bench/capacity.sh [hold] [rates...]
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-30s}; shift || true
RATES=${*:-100 200 300 400 500 600 800}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/contoso" ./cmd/contoso
"$work/contoso" up --data "$work/data" --addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 \
  --client-rate 1e9 --client-burst 1000000000 --log-level error >"$work/ready" 2>"$work/up.log" &
up=$!
for _ in $(seq 600); do grep -q '"event":"ready"' "$work/ready" 2>/dev/null && break; sleep 0.1; done
edge=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["edge"])' "$work/ready")
printf '%-6s %9s %9s %9s %9s %9s %9s %8s %s\n' rate achieved p99_all p99_read p99_buy errors requests rss_mb verdict
for rate in $RATES; do
  ( peak=0; while kill -0 $up 2>/dev/null; do r=$(awk '/VmRSS/ {print $2}' /proc/$up/status); [ "$r" -gt "$peak" ] && peak=$r; echo $peak >"$work/rss"; sleep 0.5; done ) &
  sampler=$!
  "$work/contoso" load --edge "$edge" --data "$work/data" --rate "$rate" --ramp 5s --duration "$HOLD" --spike 0s \
    --out "$work/load-$rate" --quiet >/dev/null || true
  kill $sampler 2>/dev/null || true
  python3 - "$work/load-$rate/report.json" "$rate" "$(cat "$work/rss")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); rate = float(sys.argv[2]); rss = int(sys.argv[3]) / 1024
t = r["total"]; n = t["requests"]
bad = sum(v for k, v in t["codes"].items() if k.startswith("5") or k.startswith("error:"))
achieved = n / r["loadSeconds"] if r["loadSeconds"] else 0
p99 = t["latency"]["p99Ms"]; err = bad / n if n else 1
flows = {f["flow"]: f for f in r["flows"]}
read = max(flows[f]["latency"]["p99Ms"] for f in ("browse", "product") if f in flows)
buy = flows.get("checkout", {}).get("latency", {}).get("p99Ms", 0)
verdict = "holds" if p99 < 100 and err < 0.001 else ("reads hold" if read < 100 and err < 0.001 else "fails")
print(f"{rate:<6.0f} {achieved:9.1f} {p99:9.1f} {read:9.1f} {buy:9.1f} {err:9.4%} {n:9d} {rss:8.1f} {verdict}")
PY
done
