#!/usr/bin/env bash
# Finds the highest request rate a deployment (three regions, simulated
# latency on) sustains through the edge with p99 under 100 ms and errors
# under 0.1 %, stepping the launch-day load up, and records the peak RSS
# under each step. p99 is given for all flows, for the read flows (catalog
# and product pages) and for checkout (three quorum writes across the
# simulated regions).
#
# SHAPES says which deployments, one after the other in the same run:
# "up" (one process), "processes" (up --processes: every part its own
# process, the links toxiproxy-server processes), or "up processes" (the
# default), so the two are compared side by side. For processes, RSS is
# the sum over up and every child, and each process's RSS is printed idle
# and at the last step.
# Usage: [SHAPES="up processes"] bench/capacity.sh [hold] [rates...]
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-30s}; shift || true
RATES=${*:-100 200 300 400 500 600 800}
SHAPES=${SHAPES:-up processes}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/contoso" ./cmd/contoso

# rss_kb PID: the resident memory of PID and its children, in KiB.
rss_kb() {
  local total=0 r
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    r=$(awk '/VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

# per_process PID: every process of the tree with its RSS in MiB.
per_process() {
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    printf '  %-60s %6.1f MiB\n' "$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | cut -c1-60)" \
      "$(awk '/VmRSS/ {print $2/1024}' /proc/"$p"/status 2>/dev/null || echo 0)"
  done
}

for shape in $SHAPES; do
  flags=()
  [ "$shape" = processes ] && flags=(--processes)
  data="$work/data-$shape"
  start=$(date +%s.%N)
  "$work/contoso" up "${flags[@]}" --data "$data" --addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 \
    --client-rate 1e9 --client-burst 1000000000 --log-level error >"$work/ready-$shape" 2>"$work/up-$shape.log" &
  up=$!
  for _ in $(seq 3000); do grep -q '"event":"ready"' "$work/ready-$shape" 2>/dev/null && break; sleep 0.1; done
  ready=$(python3 -c "import sys; print(round($(date +%s.%N) - $start, 1))")
  edge=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["edge"])' "$work/ready-$shape")
  echo "== $shape: ready in ${ready}s; idle RSS $(( $(rss_kb $up) / 1024 )) MiB"
  per_process $up
  printf '%-10s %-6s %9s %9s %9s %9s %9s %9s %8s %s\n' shape rate achieved p99_all p99_read p99_buy errors requests rss_mb verdict
  for rate in $RATES; do
    ( peak=0; while kill -0 $up 2>/dev/null; do r=$(rss_kb $up); [ "$r" -gt "$peak" ] && peak=$r; echo $peak >"$work/rss"; sleep 0.5; done ) &
    sampler=$!
    "$work/contoso" load --edge "$edge" --data "$data" --rate "$rate" --ramp 5s --duration "$HOLD" --spike 0s \
      --out "$work/load-$shape-$rate" --quiet >/dev/null || true
    [ "$rate" = "${RATES##* }" ] && under=$(per_process $up)
    kill $sampler 2>/dev/null || true
    python3 - "$work/load-$shape-$rate/report.json" "$rate" "$(cat "$work/rss")" "$shape" <<'PY'
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
print(f"{sys.argv[4]:<10} {rate:<6.0f} {achieved:9.1f} {p99:9.1f} {read:9.1f} {buy:9.1f} {err:9.4%} {n:9d} {rss:8.1f} {verdict}")
PY
  done
  echo "== $shape: RSS per process right after the last step"
  echo "$under"
  kill -TERM $up; wait $up 2>/dev/null || true
done
