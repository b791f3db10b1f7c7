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
#   - the gateway, HTTP and HTTPS, with `auth = "none"` on /public/;
#   - when installed (apt-get install apache2 libapache2-mod-auth-openidc),
#     Apache httpd with mod_auth_openidc, the peer that does the same job:
#     mpm_event, one child process with 64 threads, mod_proxy_http to the
#     same upstream, a session cookie on /app/ (server-side session cache in
#     shared memory, its default) and bearer JWTs on /api/ (verified with the
#     provider's RSA key). HTTP only. MOD_AUTH_OPENIDC=0 leaves it out.
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
# RUST_LOG (default: info,oidc_gateway::access=off: no access log, as nginx).
# BASE_BIN=PATH: also run that gateway binary (HTTP only; e.g. a build of
# the previous commit) as the "base ..." targets, for an A/B in one run.
# TARGETS=REGEX: only the targets whose name matches (grep -E), e.g.
# TARGETS='nginx|session|public' (nginx is the reference: keep it in).
# PROFILE=DIR: instead of the benchmark, record a `perf` profile of each
# gateway target (HTTP) into DIR (perf-<target>.data, report-<target>.txt).
# SECTIONS="proxy h2 tls scale idle login memory startup" (default: all):
#   proxy   the wrk tables above, with the cookie and Redis session stores
#           (Redis local cache hit, and redis_cache_ttl = "0s") beside the
#           memory store; redis-server runs on the proxy's core and its CPU is
#           reported in its own column ("side CPU").
#   h2      h2load, one connection with 100 concurrent streams (h2c prior
#           knowledge) vs the same path over HTTP/1.1 (wrk), gateway and nginx.
#   tls     full TLS handshakes (openssl s_time -new) and resumed ones
#           (-reuse): server CPU µs per handshake → handshakes/s per core.
#   scale   the gateway unpinned with 2 workers vs pinned with 1 (see there).
#   idle    $IDLE_CONNS idle keep-alive connections (one request each, then
#           idle for $IDLE_SETTLE s: the gateway parks HTTP/1 connections
#           idle for 1 s and gives the freed memory back at its next 1 s
#           tick): RSS per connection, HTTP and HTTPS, nginx beside, and the
#           RSS 11 s after they close (trims are at most 10 s apart).
#   login   $LOGINS logins (start → provider → callback), $LOGIN_CONC at a
#           time (examples/bench_login.rs): callbacks/s, CPU per login.
#   memory  bytes per session: memory store (examples/bench_memory.rs) and
#           Redis (used_memory delta over the logins of `login`).
set -euo pipefail
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SECTIONS=${SECTIONS:-proxy h2 tls scale idle login memory startup}
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SETTLE=${IDLE_SETTLE:-4}
LOGINS=${LOGINS:-2000}
LOGIN_CONC=${LOGIN_CONC:-8}

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
STARTUP_RUNS=${STARTUP_RUNS:-10}

P_UP=18080 P_OP=18081 P_NGX=18082 P_NGXS=18443 P_GW=18083 P_GWA=18093 P_GWS=18444 P_GWSA=18094
P_NGX2=18084 P_RD=18379 P_GWC=18087 P_GWCA=18097 P_GWR=18088 P_GWRA=18098 P_GWR0=18089 P_GWR0A=18099

cd "$(dirname "$0")/.."
ROOT=$PWD

# The gateway's access log off, as nginx's (`access_log off` below): both
# proxies are measured without a line per request. RUST_LOG=info measures
# the gateway with it.
export RUST_LOG=${RUST_LOG:-info,oidc_gateway::access=off}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need curl || ! need taskset || ! need h2load || ! need redis-server || ! need openssl; then
    echo "== installing nginx, wrk, curl, h2load (nghttp2-client), redis-server, openssl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx-light wrk curl util-linux nghttp2-client redis-server openssl >/dev/null ||
        apt-get install -y -qq nginx wrk curl util-linux nghttp2-client redis-server openssl >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building (release)"
cargo build --release --quiet --bin oidc-gateway --example bench_upstream --example bench_provider \
    --example bench_idle --example bench_login --example bench_memory
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/oidc-gateway
UPSTREAM=$TARGET/release/examples/bench_upstream
PROVIDER=$TARGET/release/examples/bench_provider
IDLE=$TARGET/release/examples/bench_idle
LOGIN=$TARGET/release/examples/bench_login
MEMORY=$TARGET/release/examples/bench_memory

. benches/lib.sh
bench_tmp bench

echo "== starting upstream, provider, nginx, gateway (logs in $TMP)"
taskset -c "$LOAD_CPU" "$UPSTREAM" 127.0.0.1:$P_UP >"$TMP/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")

bench_provider "$TMP/token" taskset -c "$LOAD_CPU" "$PROVIDER" serve 127.0.0.1:$P_OP "$TMP/token"
wait_http "http://127.0.0.1:$P_UP/"
TOKEN=$(cat "$TMP/token")

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 30000; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    ssl_session_cache shared:SSL:10m;
    http2_max_concurrent_streams 128;
    upstream app {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGX;
        listen 127.0.0.1:$P_NGXS ssl;
        listen 127.0.0.1:$P_NGX2 http2;
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

taskset -c "$PROXY_CPU" redis-server --port $P_RD --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >"$TMP/redis.log" 2>&1 &
RD_PID=$!
PIDS+=("$RD_PID")
for _ in $(seq 1 200); do
    redis-cli -p $P_RD ping >/dev/null 2>&1 && break
    sleep 0.05
done

SESSION_SECRET=$(head -c 32 /dev/urandom | base64)
gateway_toml() { # listen admin scheme [session lines]
    local listen=$1 admin=$2 scheme=$3 session=${4:-}
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
$session
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
if has proxy; then
    gateway_toml $P_GWC $P_GWCA http 'store = "cookie"' >"$TMP/gwc.toml"
    gateway_toml $P_GWR $P_GWRA http "store = \"redis\"
redis_url = \"redis://127.0.0.1:$P_RD/\"" >"$TMP/gwr.toml"
    gateway_toml $P_GWR0 $P_GWR0A http "store = \"redis\"
redis_url = \"redis://127.0.0.1:$P_RD/\"
redis_key_prefix = \"nocache:\"
redis_cache_ttl = \"0s\"" >"$TMP/gwr0.toml"
    for g in gwc gwr gwr0; do
        taskset -c "$PROXY_CPU" "$BIN" --config "$TMP/$g.toml" >"$TMP/$g.log" 2>&1 &
        PIDS+=("$!")
        eval "${g^^}_PID=$!"
    done
    ADMINS="$ADMINS $P_GWCA $P_GWRA $P_GWR0A"
fi
if [ -n "${BASE_BIN:-}" ]; then
    gateway_toml $P_GWB $P_GWBA http >"$TMP/gwb.toml"
    taskset -c "$PROXY_CPU" "$BASE_BIN" --config "$TMP/gwb.toml" >"$TMP/gwb.log" 2>&1 &
    GWB_PID=$!
    PIDS+=("$GWB_PID")
    ADMINS="$ADMINS $P_GWBA"
fi
# mod_auth_openidc (Apache httpd, mpm_event, one child process, pinned
# like the others) as the peer that does the same job, when installed.
P_AP=18085
APACHE=$(command -v apache2 || echo /usr/sbin/apache2)
AP_MODULES=/usr/lib/apache2/modules
AP_PID=
if has proxy && [ "${MOD_AUTH_OPENIDC:-1}" != 0 ] && [ -x "$APACHE" ] && [ -f "$AP_MODULES/mod_auth_openidc.so" ]; then
    mkdir -p "$TMP/apache"
    chmod 755 "$TMP" "$TMP/apache"
    cat >"$TMP/apache.conf" <<EOF
ServerRoot $TMP/apache
ServerName 127.0.0.1
Listen 127.0.0.1:$P_AP
PidFile $TMP/apache/apache.pid
DefaultRuntimeDir $TMP/apache
Mutex file:$TMP/apache default
ErrorLog $TMP/apache-error.log
LogLevel warn
LoadModule mpm_event_module $AP_MODULES/mod_mpm_event.so
LoadModule authn_core_module $AP_MODULES/mod_authn_core.so
LoadModule authz_core_module $AP_MODULES/mod_authz_core.so
LoadModule authz_user_module $AP_MODULES/mod_authz_user.so
LoadModule proxy_module $AP_MODULES/mod_proxy.so
LoadModule proxy_http_module $AP_MODULES/mod_proxy_http.so
LoadModule auth_openidc_module $AP_MODULES/mod_auth_openidc.so
User nobody
Group nogroup
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 75
OIDCProviderMetadataURL $ISSUER/.well-known/openid-configuration
OIDCClientID bench
OIDCClientSecret bench-secret
OIDCRedirectURI http://127.0.0.1:$P_AP/app/redirect_uri
OIDCCryptoPassphrase $SESSION_SECRET
OIDCScope "openid email profile"
OIDCPKCEMethod S256
# Bearer JWTs verified locally with the provider's key, as the gateway does
# with its JWKS (mod_auth_openidc fetches JWKS over https only).
OIDCOAuthVerifyCertFiles $(cat "$TMP/token.kid")#$TMP/token.pem
ProxyPass /app/ http://127.0.0.1:$P_UP/app/
ProxyPass /api/ http://127.0.0.1:$P_UP/api/
<Location /app/>
    AuthType openid-connect
    Require valid-user
</Location>
<Location /api/>
    AuthType oauth20
    Require valid-user
</Location>
EOF
    taskset -c "$PROXY_CPU" "$APACHE" -f "$TMP/apache.conf" -DFOREGROUND >"$TMP/apache.log" 2>&1 &
    AP_MASTER=$!
    PIDS+=("$AP_MASTER")
    ap_up=
    for _ in $(seq 1 200); do
        AP_PID=$(pgrep -P "$AP_MASTER" | head -1 || true)
        if [ -n "$AP_PID" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_AP/api/x")" = 401 ]; then
            ap_up=1
            break
        fi
        sleep 0.05
    done
    [ -n "$ap_up" ] || {
        echo "Apache with mod_auth_openidc did not start: $(tail -5 "$TMP/apache-error.log" "$TMP/apache.log" 2>&1)" >&2
        exit 1
    }
elif has proxy && [ "${MOD_AUTH_OPENIDC:-1}" != 0 ]; then
    echo "== mod_auth_openidc is not installed (apt-get install apache2 libapache2-mod-auth-openidc): its rows are left out"
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

login() { # base-url cookie-name [start-path]: logs in through the proxy, prints the Cookie header value
    # (the session cookie, or every chunk of a cookie-store session: name, name-1, ...)
    local base=$1 name=$2 start=${3:-/oauth2/start?rd=/app/} jar="$TMP/jar.$RANDOM"
    curl -s -o /dev/null --cacert "$ROOT/certs/ca.pem" -c "$jar" -b "$jar" -L --max-redirs 10 \
        "$base$start" >/dev/null
    awk -v n="$name" '$6 == n || $6 ~ ("^" n "-[0-9]+$") {printf "%s%s=%s", sep, $6, $7; sep = "; "}' "$jar"
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
    "gateway session|$GW_PID|http://127.0.0.1:$P_GW/app/x|Cookie: $COOKIE"
    "gateway bearer|$GW_PID|http://127.0.0.1:$P_GW/api/x|Authorization: Bearer $TOKEN"
    "gateway /public/|$GW_PID|http://127.0.0.1:$P_GW/public/x|"
)
if has proxy; then
    COOKIEC=$(login "http://127.0.0.1:$P_GWC" oidc-gateway)
    COOKIER=$(login "http://127.0.0.1:$P_GWR" oidc-gateway)
    COOKIER0=$(login "http://127.0.0.1:$P_GWR0" oidc-gateway)
    HTTP_TARGETS+=(
        "cookie-store sess|$GWC_PID|http://127.0.0.1:$P_GWC/app/x|Cookie: $COOKIEC"
        "redis sess cached|$GWR_PID:$RD_PID|http://127.0.0.1:$P_GWR/app/x|Cookie: $COOKIER"
        "redis sess ttl 0s|$GWR0_PID:$RD_PID|http://127.0.0.1:$P_GWR0/app/x|Cookie: $COOKIER0"
    )
fi
if [ -n "${BASE_BIN:-}" ]; then
    COOKIEB=$(login "http://127.0.0.1:$P_GWB" oidc-gateway)
    HTTP_TARGETS+=(
        "base session|$GWB_PID|http://127.0.0.1:$P_GWB/app/x|Cookie: $COOKIEB"
        "base bearer|$GWB_PID|http://127.0.0.1:$P_GWB/api/x|Authorization: Bearer $TOKEN"
        "base /public/|$GWB_PID|http://127.0.0.1:$P_GWB/public/x|"
    )
fi
if [ -n "$AP_PID" ]; then
    COOKIEAP=$(login "http://127.0.0.1:$P_AP" mod_auth_openidc_session /app/x)
    [ -n "$COOKIEAP" ] || {
        echo "login through mod_auth_openidc failed (see $TMP/apache-error.log)" >&2
        exit 1
    }
    HTTP_TARGETS+=(
        "mod_openidc session|$AP_PID|http://127.0.0.1:$P_AP/app/x|Cookie: $COOKIEAP"
        "mod_openidc bearer|$AP_PID|http://127.0.0.1:$P_AP/api/x|Authorization: Bearer $TOKEN"
    )
fi
HTTPS_TARGETS=(
    "nginx|$NGX_WORKER|https://127.0.0.1:$P_NGXS/app/x|"
    "gateway session|$GWS_PID|https://127.0.0.1:$P_GWS/app/x|Cookie: $COOKIES"
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

run_one() { # proto name pid[:side-pid] url header → appends "proto|name|rps|p50|p99|cpu_us|side_us" to $TMP/results
    local proto=$1 name=$2 pid=${3%%:*} side=${3#*:} url=$4 hdr=$5 out t0 t1 s0=0 s1=0 rps p50 p99 reqs errs
    [ "$side" = "$3" ] && side=
    if [ "$name" = "upstream direct" ]; then taskset -a -p -c "$PROXY_CPU" "$UP_PID" >/dev/null; fi
    t0=$(cpu_ticks "$pid")
    [ -n "$side" ] && s0=$(cpu_ticks "$side")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency ${hdr:+-H "$hdr"} "$url")
    t1=$(cpu_ticks "$pid")
    [ -n "$side" ] && s1=$(cpu_ticks "$side")
    if [ "$name" = "upstream direct" ]; then taskset -a -p -c "$LOAD_CPU" "$UP_PID" >/dev/null; fi
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket"}' <<<"$out")
    if [ -n "$errs" ]; then
        echo "  warning: $name: errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')" >&2
    fi
    local cpu scpu
    cpu=$(awk -v d=$((t1 - t0)) -v t=$TICK_US -v n="$reqs" 'BEGIN {printf "%.1f", d * t / n}')
    scpu=$(awk -v d=$((s1 - s0)) -v t=$TICK_US -v n="$reqs" 'BEGIN {printf "%.1f", d * t / n}')
    printf '  %-6s %-18s %10.0f req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %5.1f us/req%s\n' \
        "$proto" "$name" "$rps" "$p50" "$p99" "$cpu" "${side:+  (+ redis-server $scpu us/req)}"
    echo "$proto|$name|$rps|$p50|$p99|$cpu|${side:+$scpu}" >>"$TMP/results"
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
        pid=${pid%%:*}
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
        pid=${pid%%:*}
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
if has proxy; then
    echo "== HTTP: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds (proxy on cpu $PROXY_CPU, wrk + upstream on cpu $LOAD_CPU)"
    run_set http "${HTTP_TARGETS[@]}"
    if [ -z "${SKIP_HTTPS:-}" ]; then
        echo "== HTTPS (keep-alive; rustls vs nginx/OpenSSL, same RSA 2048 certificate)"
        run_set https "${HTTPS_TARGETS[@]}"
    fi
fi

GW_RSS_LOADED=$(rss_kb "$GW_PID")
GWS_RSS_LOADED=$(rss_kb "$GWS_PID")

median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
summary() { # proto
    local proto=$1 ref_rps ref_p99 names
    ref_rps=$(awk -F'|' -v p="$proto" '$1 == p && $2 == "nginx" {print $3}' "$TMP/results" | median)
    ref_p99=$(awk -F'|' -v p="$proto" '$1 == p && $2 == "nginx" {print $5}' "$TMP/results" | median)
    printf '| %-5s | %-18s | %9s | %8s | %8s | %8s | %10s | %11s | %10s |\n' \
        proto target "req/s" "p50 ms" "p99 ms" "vs nginx" "p99 - ref" "CPU us/req" "side CPU"
    printf '|-------|--------------------|-----------|----------|----------|----------|------------|-------------|------------|\n'
    awk -F'|' -v p="$proto" '$1 == p {print $2}' "$TMP/results" | awk '!seen[$0]++' | while read -r name; do
        local rps p50 p99 cpu side
        rps=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $3}' "$TMP/results" | median)
        p50=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $4}' "$TMP/results" | median)
        p99=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $5}' "$TMP/results" | median)
        cpu=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n {print $6}' "$TMP/results" | median)
        side=$(awk -F'|' -v p="$proto" -v n="$name" '$1 == p && $2 == n && $7 != "" {print $7}' "$TMP/results" | median)
        awk -v p="$proto" -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v c="$cpu" -v s="$side" \
            -v rr="$ref_rps" -v rp="$ref_p99" 'BEGIN {
            printf "| %-5s | %-18s | %9.0f | %8.3f | %8.3f | %7.2fx | %+9.3f  | %11.1f | %10s |\n",
                p, n, r, a, b, r / rr, b - rp, c, (s == "" ? "" : sprintf("redis %.1f", s)) }'
    done
}

if has proxy; then
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
fi

cpu_us_per() { # ticks-before ticks-after count → µs per item
    awk -v d=$(($2 - $1)) -v t=$TICK_US -v n="$3" 'BEGIN {if (n > 0) printf "%.1f", d * t / n; else print "n/a"}'
}

if has h2; then
    echo
    echo "== HTTP/2: h2load -c1 -m100 (one connection, 100 concurrent streams, h2c prior knowledge) vs HTTP/1.1 wrk -c$CONNS; $ROUNDS rounds"
    H2_TARGETS=(
        "nginx|$NGX_WORKER|http://127.0.0.1:$P_NGX2/app/x|http://127.0.0.1:$P_NGX/app/x|"
        "gateway session|$GW_PID|http://127.0.0.1:$P_GW/app/x|http://127.0.0.1:$P_GW/app/x|cookie: $COOKIE"
        "gateway /public/|$GW_PID|http://127.0.0.1:$P_GW/public/x|http://127.0.0.1:$P_GW/public/x|"
    )
    for r in $(seq 1 "$ROUNDS"); do
        for t in "${H2_TARGETS[@]}"; do
            IFS='|' read -r name pid url2 url1 hdr <<<"$t"
            t0=$(cpu_ticks "$pid")
            out=$(taskset -c "$LOAD_CPU" h2load -c1 -m100 -D "${DURATION%s}" --warm-up-time=1 ${hdr:+-H "$hdr"} "$url2" 2>&1)
            t1=$(cpu_ticks "$pid")
            n=$(awk '/^requests:/ {print $8}' <<<"$out")
            rps=$(awk '/^finished in/ {print $4}' <<<"$out")
            mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
            c2=$(cpu_us_per "$t0" "$t1" "$n")
            t0=$(cpu_ticks "$pid")
            out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" ${hdr:+-H "$hdr"} "$url1")
            t1=$(cpu_ticks "$pid")
            n1=$(awk '/requests in/ {print $1}' <<<"$out")
            c1=$(cpu_us_per "$t0" "$t1" "$n1")
            printf '  round %d  %-17s h2: %9.0f req/s  mean %8s  cpu %5s us/req  |  h1: cpu %5s us/req\n' \
                "$r" "$name" "${rps:-0}" "$mean" "$c2" "$c1"
            echo "h2|$name|$c2|$c1|$rps" >>"$TMP/h2"
        done
    done
    echo "  median CPU us/req (h2, 100 streams on 1 connection / h1.1, $CONNS connections):"
    awk -F'|' '{print $2}' "$TMP/h2" | awk '!seen[$0]++' | while read -r name; do
        a=$(awk -F'|' -v n="$name" '$2 == n {print $3}' "$TMP/h2" | median)
        b=$(awk -F'|' -v n="$name" '$2 == n {print $4}' "$TMP/h2" | median)
        awk -v n="$name" -v a="$a" -v b="$b" 'BEGIN {printf "  | %-17s | h2 %5.1f | h1 %5.1f | h2/h1 %.2fx |\n", n, a, b, a / b}'
    done
fi

if has tls; then
    echo
    echo "== TLS handshakes: openssl s_time (client on cpu $LOAD_CPU) against each server (cpu $PROXY_CPU), RSA 2048 certificate, 5 s each, $ROUNDS rounds"
    for r in $(seq 1 "$ROUNDS"); do
        for t in "nginx|$NGX_WORKER|$P_NGXS" "gateway|$GWS_PID|$P_GWS"; do
            IFS='|' read -r name pid port <<<"$t"
            for mode in new reuse; do
                # Resumed: with one request per connection (-www). A TLS 1.3
                # client gets its session ticket only after its Finished has
                # reached the server; s_time without -www closes at once, so
                # against rustls (which sends tickets then, RFC 8446 4.6.1)
                # it never holds a ticket and every "-reuse" handshake would
                # be a full one ("*" instead of "r" in its output).
                www=()
                if [ "$mode" = reuse ]; then www=(-www /public/tls); fi
                t0=$(cpu_ticks "$pid")
                out=$(taskset -c "$LOAD_CPU" openssl s_time -connect 127.0.0.1:"$port" -"$mode" "${www[@]}" -time 5 2>/dev/null || true)
                t1=$(cpu_ticks "$pid")
                n=$(awk '/connections in/ && /real seconds/ {print $1; exit}' <<<"$out")
                reused=$(awk '/^starting/ {getline; print; exit}' <<<"$out" | tr -cd 'r' | wc -c)
                c=$(cpu_us_per "$t0" "$t1" "${n:-0}")
                printf '  round %d  %-8s %-5s %6s handshakes in 5 s (%s resumed), server cpu %7s us/handshake\n' "$r" "$name" "$mode" "${n:-0}" "$reused" "$c"
                echo "$name|$mode|$c" >>"$TMP/tls"
            done
        done
    done
    for name in nginx gateway; do
        for mode in new reuse; do
            c=$(awk -F'|' -v n="$name" -v m="$mode" '$1 == n && $2 == m {print $3}' "$TMP/tls" | median)
            awk -v n="$name" -v m="$mode" -v c="$c" 'BEGIN {printf "  | %-8s | %-13s | %7.1f us/handshake | %6.0f handshakes/s per core |\n", n, (m == "new" ? "full" : "resumed"), c, 1e6 / c}'
        done
    done
    echo "  (resumed: TLS 1.3, one GET /public/tls per connection, proxied upstream by both; the gateway has stateless tickets + a 4096-entry session cache (src/server/tls.rs), nginx shared:SSL:10m)"
    echo | openssl s_client -connect 127.0.0.1:$P_GWS -sess_out "$TMP/sess" >/dev/null 2>&1 || true
    echo | openssl s_client -connect 127.0.0.1:$P_GWS -sess_in "$TMP/sess" 2>/dev/null | grep -m1 -E '^(Reused|New),' | sed 's/^/  gateway resumption check: /' || true
fi

if has scale; then
    echo
    echo "== scaling: the gateway with 2 Tokio workers (unpinned) vs 1 (current-thread, pinned); wrk -t2 unpinned, upstream unpinned"
    echo "   (2 cores: the load generator shares the cores with the gateway, so req/s cannot double here;"
    echo "    the figure is CPU per request: 2 workers scale by 2 x (1-worker CPU / 2-worker CPU) when given 2 free cores)"
    gateway_toml 18090 18091 http >"$TMP/gw2.toml"
    TOKIO_WORKER_THREADS=2 "$BIN" --config "$TMP/gw2.toml" >"$TMP/gw2.log" 2>&1 &
    GW2_PID=$!
    PIDS+=("$GW2_PID")
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:18091/readyz")" = 200 ] && break
        sleep 0.05
    done
    COOKIE2=$(login "http://127.0.0.1:18090" oidc-gateway)
    taskset -a -p -c 0,1 "$UP_PID" >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        for t in "1 worker|$GW_PID|$P_GW|$COOKIE" "2 workers|$GW2_PID|18090|$COOKIE2"; do
            IFS='|' read -r name pid port ck <<<"$t"
            t0=$(cpu_ticks "$pid")
            out=$(wrk -t2 -c64 -d"$DURATION" -H "Cookie: $ck" "http://127.0.0.1:$port/app/x")
            t1=$(cpu_ticks "$pid")
            n=$(awk '/requests in/ {print $1}' <<<"$out")
            rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
            c=$(cpu_us_per "$t0" "$t1" "$n")
            printf '  round %d  %-9s %9.0f req/s  gateway cpu %5s us/req\n' "$r" "$name" "$rps" "$c"
            echo "$name|$rps|$c" >>"$TMP/scale"
        done
    done
    taskset -a -p -c "$LOAD_CPU" "$UP_PID" >/dev/null
    c1=$(awk -F'|' '$1 == "1 worker" {print $3}' "$TMP/scale" | median)
    c2=$(awk -F'|' '$1 == "2 workers" {print $3}' "$TMP/scale" | median)
    r1=$(awk -F'|' '$1 == "1 worker" {print $2}' "$TMP/scale" | median)
    r2=$(awk -F'|' '$1 == "2 workers" {print $2}' "$TMP/scale" | median)
    awk -v c1="$c1" -v c2="$c2" -v r1="$r1" -v r2="$r2" 'BEGIN {printf "  | 1 worker %.0f req/s %.1f us/req | 2 workers %.0f req/s %.1f us/req | projected scaling on 2 free cores %.2fx |\n", r1, c1, r2, c2, 2 * c1 / c2}'
    kill "$GW2_PID" 2>/dev/null || true
fi

if has idle; then
    echo
    echo "== idle keep-alive connections: $IDLE_CONNS connections, one request each (GET /public/x), then idle"
    idle_run() { # name pid port [ca] → RSS KiB before, with the connections, after closing them
        local name=$1 pid=$2 port=$3 ca=${4:-} before held after
        before=$(rss_kb "$pid")
        mkfifo "$TMP/idle.in.$port"
        taskset -c "$LOAD_CPU" "$IDLE" 127.0.0.1:"$port" "$IDLE_CONNS" /public/x $ca <"$TMP/idle.in.$port" >"$TMP/idle.out.$port" 2>&1 &
        local ipid=$!
        exec 9>"$TMP/idle.in.$port"
        for _ in $(seq 1 1200); do
            grep -q '^ready' "$TMP/idle.out.$port" 2>/dev/null && break
            kill -0 "$ipid" 2>/dev/null || break
            sleep 0.05
        done
        if ! grep -q '^ready' "$TMP/idle.out.$port"; then
            echo "  $name: idle client failed: $(cat "$TMP/idle.out.$port")" >&2
            exec 9>&-
            return
        fi
        sleep "$IDLE_SETTLE"
        held=$(rss_kb "$pid")
        echo >&9
        exec 9>&-
        wait "$ipid" || true
        # The gateway gives freed memory back at most every 10 s (and did
        # when the connections parked): read the RSS after the next chance.
        sleep 11
        after=$(rss_kb "$pid")
        awk -v n="$name" -v b="$before" -v h="$held" -v a="$after" -v c="$IDLE_CONNS" 'BEGIN {
            printf "  | %-15s | before %7.1f MiB | with %d idle %7.1f MiB | %6.2f KiB/connection | after close %7.1f MiB (%+.1f MiB) |\n",
                n, b / 1024, c, h / 1024, (h - b) / c, a / 1024, (a - b) / 1024 }'
    }
    idle_run "nginx http" "$NGX_WORKER" $P_NGX
    idle_run "gateway http" "$GW_PID" $P_GW
    if [ -n "${BASE_BIN:-}" ]; then idle_run "base http" "$GWB_PID" $P_GWB; fi
    idle_run "nginx https" "$NGX_WORKER" $P_NGXS "$ROOT/certs/ca.pem"
    idle_run "gateway https" "$GWS_PID" $P_GWS "$ROOT/certs/ca.pem"
fi

if has login || has memory; then
    echo
    echo "== login callbacks: $LOGINS logins ($LOGIN_CONC at a time), /oauth2/start -> provider (auto-login) -> /oauth2/callback"
    for t in "memory|$GW_PID|$P_GW" ${GWR_PID:+"redis|$GWR_PID|$P_GWR"}; do
        IFS='|' read -r name pid port <<<"$t"
        RD_MEM0=$(redis-cli -p $P_RD info memory | awk -F: '/^used_memory:/ {print $2+0}')
        RD_KEYS0=$(redis-cli -p $P_RD dbsize)
        t0=$(cpu_ticks "$pid")
        out=$(taskset -c "$LOAD_CPU" "$LOGIN" "http://127.0.0.1:$port" "$LOGINS" "$LOGIN_CONC")
        t1=$(cpu_ticks "$pid")
        echo "  $name store: $out; gateway cpu $(cpu_us_per "$t0" "$t1" "$LOGINS") us/login (provider on cpu $LOAD_CPU, not counted)"
        if [ "$name" = redis ]; then
            RD_MEM1=$(redis-cli -p $P_RD info memory | awk -F: '/^used_memory:/ {print $2+0}')
            RD_KEYS1=$(redis-cli -p $P_RD dbsize)
            one=$( (redis-cli -p $P_RD --scan --pattern 'oidc-gateway:session:*' || true) | head -1)
            echo "  redis: $(((RD_MEM1 - RD_MEM0) / LOGINS)) bytes of used_memory per session ($((RD_KEYS1 - RD_KEYS0)) keys for $LOGINS sessions;" \
                "one key: $one, MEMORY USAGE $(redis-cli -p $P_RD memory usage "$one") B, value $(redis-cli -p $P_RD strlen "$one" 2>/dev/null || echo '?') B)"
        fi
    done
fi

if has memory; then
    echo
    echo "== memory store: bytes per session (examples/bench_memory.rs, RSS delta over N sessions)"
    taskset -c "$PROXY_CPU" "$MEMORY" | sed 's/^/  /'
fi

if has startup && [ -z "${SKIP_STARTUP:-}" ]; then
    echo
    echo "== start-up: process start to /readyz 200 (discovery + JWKS from the local provider), $STARTUP_RUNS runs"
    sed -e "s/127.0.0.1:$P_GW\"/127.0.0.1:18085\"/" -e "s/127.0.0.1:$P_GWA\"/127.0.0.1:18095\"/" \
        "$TMP/gw.toml" >"$TMP/startup.toml"
    taskset -c "$PROXY_CPU" "$PROVIDER" startup "$STARTUP_RUNS" 127.0.0.1:18095 "$BIN" --config "$TMP/startup.toml"
fi
