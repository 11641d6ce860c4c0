#!/usr/bin/env bash
# Measures GET /api/products/{id} side by side in one run, with wrk:
# straight at one stamp, through the edge, and through nginx as a plain
# reverse proxy to the same stamp. Needs wrk and nginx (Debian packages).
# Usage: bench/edge.sh [duration] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-32}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install wrk nginx-light)"; exit 1; }
done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/contoso" ./cmd/contoso
"$work/contoso" up --data "$work/data" --latency off --addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 \
  --client-rate 1e9 --client-burst 1000000000 --log-level error >"$work/ready" 2>"$work/up.log" &
for _ in $(seq 600); do grep -q '"event":"ready"' "$work/ready" 2>/dev/null && break; sleep 0.1; done
ready=$(head -1 "$work/ready")
stamp=$(echo "$ready" | python3 -c 'import json,sys; print(json.load(sys.stdin)["regions"]["westeurope"])')
edge=$(echo "$ready" | python3 -c 'import json,sys; print(json.load(sys.stdin)["edge"])')
cred=$(cat "$work/data/config/edge.key")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  upstream stamp { server ${stamp#http://}; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
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
path=/api/products/contoso-skyline-1-launch-edition
run() { # name url [header]
  local out
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency ${3:+-H "$3"} "$2$path")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  printf '%-28s %10s req/s  p50 %-8s p99 %-8s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
  echo "$rps" >"$work/rps-$1"
}
echo "wrk -t2 -c$CONNS -d$DURATION, GET $path, $(nproc) cores"
run stamp-direct "$stamp" "X-Edge-Credential: $cred"
run edge "$edge" "X-Client-Region: westeurope"
run nginx "http://127.0.0.1:$port"
python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
r = {n: float(open(f"{w}/rps-{n}").read()) for n in ("stamp-direct", "edge", "nginx")}
print(f"edge/direct {r['edge']/r['stamp-direct']:.2f}  nginx/direct {r['nginx']/r['stamp-direct']:.2f}  edge/nginx {r['edge']/r['nginx']:.2f}")
PY
