#!/usr/bin/env bash
# Measures GET /api/products/{id} side by side in one run, with wrk, on
# five paths:
#
#   bare          a plain net/http server answering the stamp's bytes
#                 (bench/bare): the ceiling of a Go server on this machine
#   nginx→bare    nginx (2 workers, keepalive upstream) in front of it
#   stamp         one stamp directly, with the edge's credential
#   nginx→stamp   nginx in front of that stamp, adding the credential
#   goproxy→stamp the standard library's httputil.ReverseProxy in front of
#                 that stamp (bench/bare -proxy): the least a Go proxy costs
#   edge→stamp    the edge's POP in front of that stamp
#
# and prints every path's throughput and latency, then the ratios the
# goals are written in: edge→stamp against nginx→stamp (throughput, p99)
# and stamp against bare; and the CPU time each process spent per request
# (from /proc), which says what each part costs whatever else the machine
# runs meanwhile. The deployment is `contoso up` with one region
# (REGIONS), so the edge reaches exactly the stamp nginx reaches, and
# telemetry on as shipped: every request traced (parentbased_always_on)
# unless OTEL_TRACES_SAMPLER says otherwise.
#
# The paths take turns, ROUNDS times, and each path's median round is
# reported: on a machine shared with other work a single run says little.
# Builds contoso and bench/bare; installs wrk and nginx-light from Debian
# when missing (as root).
#
# PATHS picks some of the paths (names as above, e.g. PATHS="nginx-stamp
# edge-stamp"); the ratios of the paths measured are printed.
#
# Usage: [ROUNDS=3] [REGIONS=westeurope] [PATHS=...] bench/compare.sh [duration] [connections] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-8s}
CONNS=${2:-64}
THREADS=${3:-2}
ROUNDS=${ROUNDS:-3}
REGIONS=${REGIONS:-westeurope}
region=${REGIONS%%,*}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y "${missing[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
  else
    echo "missing: ${missing[*]} (apt-get install -y wrk nginx-light)" >&2
    exit 1
  fi
fi

work=$(mktemp -d)
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  kill $(jobs -p) 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/contoso" ./cmd/contoso
go build -o "$work/bare" ./bench/bare

# up: one process for the stores, the stamp, the edge and the operations
# plane; limits off, so that the client limit measures nothing here.
"$work/contoso" up --regions "$REGIONS" --data "$work/data" --latency off --addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 \
  --client-rate 1e9 --client-burst 1000000000 --log-level error >"$work/ready" 2>"$work/up.log" &
up_pid=$!
for _ in $(seq 900); do grep -q '"event":"ready"' "$work/ready" 2>/dev/null && break; sleep 0.1; done
grep -q '"event":"ready"' "$work/ready" || { echo "up never got ready:" >&2; tail -20 "$work/up.log" >&2; exit 1; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1" <"$work/ready"; }
stamp=$(field "['regions']['$region']")
edge=$(field "['edge']")
cred=$(cat "$work/data/config/edge.key")
path=/api/products/contoso-skyline-1-launch-edition

# bare answers with the stamp's own bytes.
curl -sf -H "X-Edge-Credential: $cred" "$stamp$path" >"$work/body.json"
"$work/bare" -body "$work/body.json" >"$work/bare.url" 2>"$work/bare.log" &
bare_pid=$!
for _ in $(seq 100); do [ -s "$work/bare.url" ] && break; sleep 0.05; done
bare=$(head -1 "$work/bare.url")
"$work/bare" -proxy "$stamp" -header "X-Edge-Credential: $cred" >"$work/goproxy.url" 2>"$work/goproxy.log" &
goproxy_pid=$!
for _ in $(seq 100); do [ -s "$work/goproxy.url" ] && break; sleep 0.05; done
goproxy=$(head -1 "$work/goproxy.url")

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_bare=$(freeport)
nginx_stamp=$(freeport)
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  upstream bare { server ${bare#http://}; keepalive 128; }
  upstream stamp { server ${stamp#http://}; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_bare;
    location / { proxy_pass http://bare; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$nginx_stamp;
    location / {
      proxy_pass http://stamp;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Edge-Credential $cred;
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
for _ in $(seq 100); do [ -s "$work/nginx.pid" ] && break; sleep 0.05; done
nginx_pid=$(cat "$work/nginx.pid")

# Every path must answer 200 with the same length before it is measured.
want=$(wc -c <"$work/body.json")
check() { # name url [header]
  local n
  n=$(curl -sf ${3:+-H "$3"} "$2$path" | wc -c)
  [ "$n" = "$want" ] || { echo "$1 answers $n bytes, want $want" >&2; exit 1; }
}
check bare "$bare"
check nginx-bare "http://127.0.0.1:$nginx_bare"
check stamp "$stamp" "X-Edge-Credential: $cred"
check nginx-stamp "http://127.0.0.1:$nginx_stamp"
check goproxy-stamp "$goproxy"
check edge "$edge" "X-Client-Region: $region"

all=(bare nginx-bare stamp nginx-stamp goproxy-stamp edge-stamp)
allurls=("$bare" "http://127.0.0.1:$nginx_bare" "$stamp" "http://127.0.0.1:$nginx_stamp" "$goproxy" "$edge")
allheaders=("" "" "X-Edge-Credential: $cred" "" "" "X-Client-Region: $region")
names=() urls=() headers=()
for i in "${!all[@]}"; do
  case " ${PATHS:-${all[*]}} " in *" ${all[$i]} "*) names+=("${all[$i]}") urls+=("${allurls[$i]}") headers+=("${allheaders[$i]}") ;; esac
done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# A warm-up of every path: connections, caches, the heap's first growth.
for i in "${!names[@]}"; do
  wrk -t"$THREADS" -c"$CONNS" -d2s ${headers[$i]:+-H "${headers[$i]}"} "${urls[$i]}$path" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    # The CPU time each process spent meanwhile, from /proc: the cost of
    # a request in each part, whatever else the machine runs.
    python3 - "$work/cpu-${names[$i]}-$round.txt" "$up_pid" "$bare_pid" "$nginx_pid" "$goproxy_pid" -- \
      wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${headers[$i]:+-H "${headers[$i]}"} "${urls[$i]}$path" \
      >"$work/wrk-${names[$i]}-$round.txt" <<'PY'
import os, resource, subprocess, sys
out, up, bare, nginx, goproxy = sys.argv[1:6]
cmd = sys.argv[sys.argv.index("--") + 1:]
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid, tree=False):
    total = 0
    pids = [pid]
    if tree:
        pids += open(f"/proc/{pid}/task/{pid}/children").read().split()
    for p in pids:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])  # utime, stime
    return total / tick
before = {"up": cpu(up), "bare": cpu(bare), "nginx": cpu(nginx, True), "goproxy": cpu(goproxy)}
child = resource.getrusage(resource.RUSAGE_CHILDREN)
subprocess.run(cmd, check=True)
after_child = resource.getrusage(resource.RUSAGE_CHILDREN)
after = {"up": cpu(up), "bare": cpu(bare), "nginx": cpu(nginx, True), "goproxy": cpu(goproxy)}
with open(out, "w") as f:
    for k in before:
        f.write(f"{k} {after[k] - before[k]:.3f}\n")
    f.write(f"wrk {after_child.ru_utime + after_child.ru_stime - child.ru_utime - child.ru_stime:.3f}\n")
PY
  done
done

echo "GET $path ($want bytes), wrk -t$THREADS -c$CONNS -d$DURATION, median of $ROUNDS rounds"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(uname -sr); $(go version | cut -d' ' -f3); nginx $(nginx -v 2>&1 | cut -d/ -f2)"
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg); tracing: ${OTEL_TRACES_SAMPLER:-parentbased_always_on (every request)}${OTEL_TRACES_SAMPLER_ARG:+ $OTEL_TRACES_SAMPLER_ARG}"
python3 - "$work" "$ROUNDS" "${names[@]}" <<'PY'
import re, statistics, sys
work, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]

def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {p: ms(re.search(r"^\s+%s%%\s+(\S+)" % p, text, re.M).group(1)) for p in ("50", "99")}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "non2xx": int(bad.group(1)) if bad else 0,
            "errors": errors.group(1) if errors else ""}

res = {}
for n in names:
    runs = sorted((parse(f"{work}/wrk-{n}-{r}.txt") for r in range(1, rounds + 1)), key=lambda x: x["rps"])
    med = runs[len(runs) // 2]
    med["all"] = [round(x["rps"]) for x in runs]
    res[n] = med
print(f"{'path':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}  rounds (req/s)")
for n in names:
    r = res[n]
    print(f"{n:<14} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['non2xx']:>8}  {r['all']}" + (f"  socket errors: {r['errors']}" if r["errors"] else ""))
# CPU per request, by process: µs of CPU (user and system) each part spent
# per request answered, median over the rounds. The edge's own cost is
# up's on edge→stamp less up's on stamp (the same stamp answers both).
def cpu(n, r):
    d = dict(l.split() for l in open(f"{work}/cpu-{n}-{r}.txt"))
    reqs = int(re.search(r"(\d+) requests in", open(f"{work}/wrk-{n}-{r}.txt").read()).group(1))
    return {k: float(v) * 1e6 / reqs for k, v in d.items()}
print()
print(f"{'CPU µs/request':<14} {'wrk':>7} {'nginx':>7} {'goproxy':>7} {'up':>7} {'bare':>7} {'total':>7}")
costs = {}
for n in names:
    per = [cpu(n, r) for r in range(1, rounds + 1)]
    med = {k: statistics.median(p[k] for p in per) for k in per[0]}
    costs[n] = med
    print(f"{n:<14} {med['wrk']:>7.1f} {med['nginx']:>7.1f} {med['goproxy']:>7.1f} {med['up']:>7.1f} {med['bare']:>7.1f} {sum(med.values()):>7.1f}")
if "edge-stamp" in costs and "stamp" in costs and "nginx-stamp" in costs:
    # A stamp costs more per request behind a proxy than hit directly (the
    # proxy's connections bring it fewer requests per wakeup): the edge's
    # own cost is between up's on edge→stamp less up's on stamp and less
    # up's on nginx→stamp.
    hi = costs["edge-stamp"]["up"] - costs["stamp"]["up"]
    lo = costs["edge-stamp"]["up"] - costs["nginx-stamp"]["up"]
    gp = f", httputil.ReverseProxy's {costs['goproxy-stamp']['goproxy']:.1f} µs" if "goproxy-stamp" in costs else ""
    print(f"the edge's own CPU per request: {lo:.1f} to {hi:.1f} µs (up on edge→stamp less up on nginx→stamp, less up on stamp); nginx's {costs['nginx-stamp']['nginx']:.1f} µs{gp}")
print()
# Ratios are taken within each round (paths measured minutes apart share
# less of the machine's load) and the median round's is reported.
def ratio(a, b, key):
    per = sorted(parse(f"{work}/wrk-{a}-{r}.txt")[key] / parse(f"{work}/wrk-{b}-{r}.txt")[key] for r in range(1, rounds + 1))
    return per[len(per) // 2], per
for label, a, b, key, goal in (
    ("edge→stamp / nginx→stamp throughput", "edge-stamp", "nginx-stamp", "rps", "goal ≥ 0.80"),
    ("edge→stamp / nginx→stamp p99", "edge-stamp", "nginx-stamp", "p99", "goal ≤ 1.20"),
    ("goproxy→stamp / nginx→stamp throughput", "goproxy-stamp", "nginx-stamp", "rps", ""),
    ("stamp / bare throughput", "stamp", "bare", "rps", "goal ≥ 0.80"),
    ("nginx→stamp / nginx→bare throughput", "nginx-stamp", "nginx-bare", "rps", ""),
):
    if a not in res or b not in res:
        continue
    med, per = ratio(a, b, key)
    print(f"{label:<39} {med:5.2f}  {'(' + goal + ') ' if goal else ''}rounds {[round(x, 2) for x in per]}")
PY
