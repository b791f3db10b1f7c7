#!/usr/bin/env bash
# Load benchmark: oidc-gateway side by side with nginx, on loopback.
#
#   bash benches/load.sh
#
# Installs nginx and wrk when missing (apt-get), builds the release binary and
# the bench helpers (examples/bench_upstream.rs, examples/bench_provider.rs),
# then starts on 127.0.0.1 only:
#   - a small fast upstream (fixed 13-byte 200 response, one thread);
#   - the development OpenID Provider (auto-login, long-lived access token);
#   - nginx as a plain reverse proxy with upstream keepalive (the reference),
#     HTTP and HTTPS (same certificate as the gateway: certs/gateway.crt);
#   - the gateway, HTTP and HTTPS, with `auth = "none"` on /public/.
# The proxy under test and the upstream... see PINNING below. Every target is
# measured with `wrk -t1 -c$CONNS -d$DURATION --latency` (closed loop,
# keep-alive), the targets alternating over $ROUNDS rounds; per target it
# prints the median requests/s, p50, p99, the ratio to nginx and the proxy's
# CPU time per request (utime+stime from /proc, all threads).
# Then: gateway RSS idle and after load, and start-up time to /readyz 200.
#
# PINNING (2 cores): the proxy under test (nginx worker, or the gateway with
# one Tokio worker) runs on core $PROXY_CPU; wrk and the upstream share core
# $LOAD_CPU. For the "upstream direct" target the upstream is moved to core
# $PROXY_CPU for the duration of the run, so it plays the proxy's part.
#
# Settings (environment): ROUNDS=3 DURATION=8s CONNS=32 PROXY_CPU=0 LOAD_CPU=1
# SKIP_HTTPS=1 SKIP_STARTUP=1 CARGO_TARGET_DIR (default: target).
# BASE_BIN=PATH: also run that gateway binary (HTTP only; e.g. a build of
# the previous commit) as the "base ..." targets, for an A/B in one run.
# TARGETS=REGEX: only the targets whose name matches (grep -E), e.g.
# TARGETS='nginx|session|public' (nginx is the reference: keep it in).
# PROFILE=DIR: instead of the benchmark, record a `perf` profile of each
# gateway target (HTTP) into DIR (perf-<target>.data, report-<target>.txt).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
STARTUP_RUNS=${STARTUP_RUNS:-10}

P_UP=18080 P_OP=18081 P_NGX=18082 P_NGXS=18443 P_GW=18083 P_GWA=18093 P_GWS=18444 P_GWSA=18094

cd "$(dirname "$0")/.."
ROOT=$PWD

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need curl || ! need taskset; then
    echo "== installing nginx, wrk, curl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx-light wrk curl util-linux >/dev/null ||
        apt-get install -y -qq nginx wrk curl util-linux >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building (release)"
cargo build --release --quiet --bin oidc-gateway --example bench_upstream --example bench_provider
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/oidc-gateway
UPSTREAM=$TARGET/release/examples/bench_upstream
PROVIDER=$TARGET/release/examples/bench_provider

TMP=$(mktemp -d /tmp/oidc-gateway-bench.XXXXXX)
PIDS=()
cleanup() {
    if [ -f "$TMP/nginx.pid" ]; then kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

wait_http() { # url [curl args]: wait until it answers (any status), 10 s at most
    local url=$1
    shift
    for _ in $(seq 1 200); do
        curl -s -o /dev/null -k "$@" "$url" && return 0
        sleep 0.05
    done
    echo "timeout waiting for $url" >&2
    return 1
}

echo "== starting upstream, provider, nginx, gateway (logs in $TMP)"
taskset -c "$LOAD_CPU" "$UPSTREAM" 127.0.0.1:$P_UP >"$TMP/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")

# The provider runs until its stdin closes: keep a pipe open.
mkfifo "$TMP/op.in"
sleep 100000 >"$TMP/op.in" &
PIDS+=("$!")
taskset -c "$LOAD_CPU" "$PROVIDER" serve 127.0.0.1:$P_OP "$TMP/token" <"$TMP/op.in" >"$TMP/op.out" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$P_UP/"
wait_http "http://127.0.0.1:$P_OP/.well-known/openid-configuration"
# The provider answers before it has written the token and printed the issuer.
for _ in $(seq 1 200); do
    [ -s "$TMP/token" ] && [ -s "$TMP/op.out" ] && break
    sleep 0.05
done
ISSUER=$(head -1 "$TMP/op.out")
TOKEN=$(cat "$TMP/token")

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    upstream app {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGX;
        listen 127.0.0.1:$P_NGXS ssl;
        ssl_certificate $ROOT/certs/gateway.crt;
        ssl_certificate_key $ROOT/certs/gateway.key;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
taskset -c "$PROXY_CPU" "$NGINX" -c "$TMP/nginx.conf" >"$TMP/nginx.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$P_NGX/"
NGX_MASTER=$(cat "$TMP/nginx.pid")
NGX_WORKER=$(pgrep -P "$NGX_MASTER" | head -1)

SESSION_SECRET=$(head -c 32 /dev/urandom | base64)
gateway_toml() { # listen admin scheme [tls]
    local listen=$1 admin=$2 scheme=$3
    cat <<EOF
[server]
listen = "127.0.0.1:$listen"
public_url = "$scheme://127.0.0.1:$listen"
EOF
    if [ "$scheme" = https ]; then
        cat <<EOF
tls_cert = "$ROOT/certs/gateway.crt"
tls_key = "$ROOT/certs/gateway.key"
EOF
    fi
    cat <<EOF
[admin]
listen = "127.0.0.1:$admin"
[upstream]
url = "http://127.0.0.1:$P_UP"
[provider]
issuer = "$ISSUER"
client_id = "bench"
client_secret = "bench-secret"
[session]
secret = "$SESSION_SECRET"
[[route]]
path = "/public/"
auth = "none"
EOF
}
gateway_toml $P_GW $P_GWA http >"$TMP/gw.toml"
gateway_toml $P_GWS $P_GWSA https >"$TMP/gws.toml"
taskset -c "$PROXY_CPU" "$BIN" --config "$TMP/gw.toml" >"$TMP/gw.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
taskset -c "$PROXY_CPU" "$BIN" --config "$TMP/gws.toml" >"$TMP/gws.log" 2>&1 &
GWS_PID=$!
PIDS+=("$GWS_PID")
P_GWB=18086 P_GWBA=18096
ADMINS="$P_GWA $P_GWSA"
if [ -n "${BASE_BIN:-}" ]; then
    gateway_toml $P_GWB $P_GWBA http >"$TMP/gwb.toml"
    taskset -c "$PROXY_CPU" "$BASE_BIN" --config "$TMP/gwb.toml" >"$TMP/gwb.log" 2>&1 &
    GWB_PID=$!
    PIDS+=("$GWB_PID")
    ADMINS="$ADMINS $P_GWBA"
fi
for a in $ADMINS; do
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$a/readyz")" = 200 ] && break
        sleep 0.05
    done
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
GW_RSS_IDLE=$(rss_kb "$GW_PID")
GWS_RSS_IDLE=$(rss_kb "$GWS_PID")

login() { # base-url cookie-name: logs in through the gateway, prints the session cookie value
    local base=$1 name=$2 jar="$TMP/jar.$RANDOM"
    curl -s -o /dev/null --cacert "$ROOT/certs/ca.pem" -c "$jar" -b "$jar" -L --max-redirs 10 \
        "$base/oauth2/start?rd=/app/" >/dev/null
    awk -v n="$name" '$6 == n {print $7}' "$jar" | tail -1
}
COOKIE=$(login "http://127.0.0.1:$P_GW" oidc-gateway)
COOKIES=$(login "https://127.0.0.1:$P_GWS" __Host-oidc-gateway)
[ -n "$COOKIE" ] && [ -n "$COOKIES" ] || {
    echo "login failed" >&2
    exit 1
}

# Targets: name|pid-to-measure|url|header
HTTP_TARGETS=(
    "upstream direct|$UP_PID|http://127.0.0.1:$P_UP/app/x|"
    "nginx|$NGX_WORKER|http://127.0.0.1:$P_NGX/app/x|"
    "gateway session|$GW_PID|http://127.0.0.1:$P_GW/app/x|Cookie: oidc-gateway=$COOKIE"
    "gateway bearer|$GW_PID|http://127.0.0.1:$P_GW/api/x|Authorization: Bearer $TOKEN"
    "gateway /public/|$GW_PID|http://127.0.0.1:$P_GW/public/x|"
)
if [ -n "${BASE_BIN:-}" ]; then
    COOKIEB=$(login "http://127.0.0.1:$P_GWB" oidc-gateway)
    HTTP_TARGETS+=(
        "base session|$GWB_PID|http://127.0.0.1:$P_GWB/app/x|Cookie: oidc-gateway=$COOKIEB"
        "base bearer|$GWB_PID|http://127.0.0.1:$P_GWB/api/x|Authorization: Bearer $TOKEN"
        "base /public/|$GWB_PID|http://127.0.0.1:$P_GWB/public/x|"
    )
fi
HTTPS_TARGETS=(
    "nginx|$NGX_WORKER|https://127.0.0.1:$P_NGXS/app/x|"
    "gateway session|$GWS_PID|https://127.0.0.1:$P_GWS/app/x|Cookie: __Host-oidc-gateway=$COOKIES"
    "gateway bearer|$GWS_PID|https://127.0.0.1:$P_GWS/api/x|Authorization: Bearer $TOKEN"
    "gateway /public/|$GWS_PID|https://127.0.0.1:$P_GWS/public/x|"
)

check_target() { # url header: must answer 200 with the upstream's body
    local url=$1 hdr=$2 out
    out=$(curl -s --cacert "$ROOT/certs/ca.pem" -w ' %{http_code}' ${hdr:+-H "$hdr"} "$url")
    if [ "$out" != "hello, world
 200" ]; then
        echo "target $url does not answer 200 from the upstream: $out" >&2
        exit 1
    fi
}

cpu_ticks() { # utime+stime of a process (all threads), in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
to_ms() { # wrk latency ("812.00us", "1.23ms", "1.01s") → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else print v }'
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

run_one() { # proto idx name pid url header → appends "proto|name|rps|p50|p99|cpu_us" to $TMP/results
    local proto=$1 name=$2 pid=$3 url=$4 hdr=$5 out t0 t1 rps p50 p99 reqs errs
    if [ "$name" = "upstream direct" ]; then taskset -a -p -c "$PROXY_CPU" "$UP_PID" >/dev/null; fi
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency ${hdr:+-H "$hdr"} "$url")
    t1=$(cpu_ticks "$pid")
    if [ "$name" = "upstream direct" ]; then taskset -a -p -c "$LOAD_CPU" "$UP_PID" >/dev/null; fi
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket"}' <<<"$out")
    if [ -n "$errs" ]; then
        echo "  warning: $name: errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')" >&2
    fi
    local cpu
    cpu=$(awk -v d=$((t1 - t0)) -v t=$TICK_US -v n="$reqs" 'BEGIN {printf "%.1f", d * t / n}')
    printf '  %-6s %-18s %10.0f req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %5.1f us/req\n' \
        "$proto" "$name" "$rps" "$p50" "$p99" "$cpu"
    echo "$proto|$name|$rps|$p50|$p99|$cpu" >>"$TMP/results"
}

run_set() { # proto targets...
    local proto=$1
    shift
    local t name pid url hdr
    if [ -n "${TARGETS:-}" ]; then
        local keep=()
        for t in "$@"; do
            grep -qE -- "$TARGETS" <<<"${t%%|*}" && keep+=("$t")
        done
        set -- "${keep[@]}"
    fi
    for t in "$@"; do
        IFS='|' read -r name pid url hdr <<<"$t"
        check_target "$url" "$hdr"
        # Warm-up: connections, caches.
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s ${hdr:+-H "$hdr"} "$url" >/dev/null
    done
    for r in $(seq 1 "$ROUNDS"); do
        echo "-- $proto round $r/$ROUNDS"
        for t in "$@"; do
            IFS='|' read -r name pid url hdr <<<"$t"
            run_one "$proto" "$name" "$pid" "$url" "$hdr"
        done
    done
}

: >"$TMP/results"
if [ -n "${PROFILE:-}" ]; then
    mkdir -p "$PROFILE"
    for t in "${HTTP_TARGETS[@]}"; do
        IFS='|' read -r name pid url hdr <<<"$t"
        case $name in upstream*) continue ;; esac
        if [ -n "${TARGETS:-}" ] && ! grep -qE -- "$TARGETS" <<<"$name"; then continue; fi
        check_target "$url" "$hdr"
        f=$(tr -c 'a-z\n' _ <<<"$name")
        perf record -q -F 4999 -g -o "$PROFILE/perf-$f.data" -p "$pid" -- sleep 5 >/dev/null 2>&1 &
        rec=$!
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d5s ${hdr:+-H "$hdr"} "$url" >"$PROFILE/wrk-$f.txt"
        wait "$rec" || true
        perf report -q -i "$PROFILE/perf-$f.data" --no-children -g none --sort dso,symbol 2>/dev/null |
            grep -v '^$' | sed 's/ \{3,\}/ /g' | head -80 >"$PROFILE/report-$f.txt" || true
        # System calls per request.
        perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex -p "$pid" -o "$PROFILE/syscalls-$f.txt" -- sleep 3 2>/dev/null &
        rec=$!
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d3s ${hdr:+-H "$hdr"} "$url" >"$PROFILE/wrk2-$f.txt"
        wait "$rec" || true
        n=$(awk '/requests in/ {print $1}' "$PROFILE/wrk2-$f.txt")
        echo "$name: $(awk '/^Requests/ {print $2}' "$PROFILE/wrk-$f.txt") req/s; syscalls per request:" \
            "$(awk -F, -v n="$n" '$1 > 0 {split($3, a, ":"); printf "%s %.2f  ", a[2], $1 / n}' "$PROFILE/syscalls-$f.txt")"
    done
    exit 0
fi
echo "== HTTP: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds (proxy on cpu $PROXY_CPU, wrk + upstream on cpu $LOAD_CPU)"
run_set http "${HTTP_TARGETS[@]}"
if [ -z "${SKIP_HTTPS:-}" ]; then
    echo "== HTTPS (keep-alive; rustls vs nginx/OpenSSL, same RSA 2048 certificate)"
    run_set https "${HTTPS_TARGETS[@]}"
fi

GW_RSS_LOADED=$(rss_kb "$GW_PID")
GWS_RSS_LOADED=$(rss_kb "$GWS_PID")

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
summary() { # proto
    local proto=$1 ref_rps ref_p99 names
    ref_rps=$(awk -F'|' -v p="$proto" '$1 == p && $2 == "nginx" {print $3}' "$TMP/results" | median)
    ref_p99=$(awk -F'|' -v p="$proto" '$1 == p && $2 == "nginx" {print $5}' "$TMP/results" | median)
    printf '| %-5s | %-16s | %9s | %8s | %8s | %8s | %10s | %11s |\n' \
        proto target "req/s" "p50 ms" "p99 ms" "vs nginx" "p99 - ref" "CPU us/req"
    printf '|-------|------------------|-----------|----------|----------|----------|------------|-------------|\n'
    awk -F'|' -v p="$proto" '$1 == p {print $2}' "$TMP/results" | awk '!seen[$0]++' | while read -r name; do
        local rps p50 p99 cpu
        rps=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $3}' "$TMP/results" | median)
        p50=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $4}' "$TMP/results" | median)
        p99=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $5}' "$TMP/results" | median)
        cpu=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $6}' "$TMP/results" | median)
        awk -v p="$proto" -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v c="$cpu" \
            -v rr="$ref_rps" -v rp="$ref_p99" 'BEGIN {
            printf "| %-5s | %-16s | %9.0f | %8.3f | %8.3f | %7.2fx | %+9.3f  | %11.1f |\n",
                p, n, r, a, b, r / rr, b - rp, c }'
    done
}

echo
echo "== results (median of $ROUNDS rounds; $(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
summary http
if [ -z "${SKIP_HTTPS:-}" ]; then
    echo
    summary https
fi
echo
echo "gateway RSS (VmRSS): http idle $((GW_RSS_IDLE / 1024)).$((GW_RSS_IDLE % 1024 * 10 / 1024)) MiB, after load $((GW_RSS_LOADED / 1024)).$((GW_RSS_LOADED % 1024 * 10 / 1024)) MiB;" \
    "https idle $((GWS_RSS_IDLE / 1024)).$((GWS_RSS_IDLE % 1024 * 10 / 1024)) MiB, after load $((GWS_RSS_LOADED / 1024)).$((GWS_RSS_LOADED % 1024 * 10 / 1024)) MiB"
echo "nginx RSS (worker + master): $((($(rss_kb "$NGX_WORKER") + $(rss_kb "$NGX_MASTER")) / 1024)) MiB"

if [ -z "${SKIP_STARTUP:-}" ]; then
    echo
    echo "== start-up: process start to /readyz 200 (discovery + JWKS from the local provider), $STARTUP_RUNS runs"
    sed -e "s/127.0.0.1:$P_GW\"/127.0.0.1:18085\"/" -e "s/127.0.0.1:$P_GWA\"/127.0.0.1:18095\"/" \
        "$TMP/gw.toml" >"$TMP/startup.toml"
    taskset -c "$PROXY_CPU" "$PROVIDER" startup "$STARTUP_RUNS" 127.0.0.1:18095 "$BIN" --config "$TMP/startup.toml"
fi
