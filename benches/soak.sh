#!/usr/bin/env bash
# Soak and slowloris run (issue 11, item 8), on loopback, bounded in time.
#
#   bash benches/soak.sh                          # the full run (~5 min on 2 cores)
#   REQUESTS=100000 SLOWLORIS=2000 bash benches/soak.sh   # a short one
#
# Builds the release binary and the helpers (examples/soak_client.rs,
# examples/bench_upstream.rs), then starts on 127.0.0.1 only:
#   - a small fast upstream (fixed 13-byte 200 response);
#   - the development OpenID Provider with refresh tokens and short access
#     tokens (ACCESS_TTL seconds: sessions are refreshed from half-life);
#   - the gateway (memory session store, `auth = "none"` on /public/).
# 1. Soak: REQUESTS authenticated requests from CONNS workers over mixed
#    routes (session cookie, bearer, forward-auth, userinfo; plus public
#    requests), with session churn: each worker logs in through the provider,
#    sends SESSION_REQUESTS requests, signs out and checks that the old
#    cookie is refused, and logs in again. Prints the gateway's RSS and open
#    file descriptors every 5 s, the answers by kind (any answer that is not
#    the expected one is counted and makes the run fail), the RSS spread and
#    descriptor range after warm-up, and the gateway's warn/error log lines
#    by message.
# 2. Slowloris: SLOWLORIS connections that send a request head one header
#    line a second and never finish it (the gateway closes each after
#    server.header_read_timeout, 10 s; they reconnect), held for
#    SLOWLORIS_HOLD seconds, while an authenticated request is timed every
#    250 ms on a kept-alive connection and every second on a new connection.
#    Prints RSS and descriptors before / during / after and the latencies.
#    SLOWLORIS_ROUNDS rounds against the same gateway: a second round that
#    peaks where the first did shows the RSS kept after the first is the
#    allocator's, not a leak.
#
# Settings (environment): REQUESTS=1000000 CONNS=32 SESSION_REQUESTS=2000
# ACCESS_TTL=2 SLOWLORIS=10000 SLOWLORIS_HOLD=30 SLOWLORIS_ROUNDS=2 SKIP_SOAK=1 SKIP_SLOWLORIS=1
# CARGO_TARGET_DIR (default: target), GATEWAY_BIN (another gateway binary to
# run instead of the one built here, e.g. an earlier build for an A/B).
set -euo pipefail

REQUESTS=${REQUESTS:-1000000}
CONNS=${CONNS:-32}
SESSION_REQUESTS=${SESSION_REQUESTS:-2000}
ACCESS_TTL=${ACCESS_TTL:-2}
SLOWLORIS=${SLOWLORIS:-10000}
SLOWLORIS_HOLD=${SLOWLORIS_HOLD:-30}
SLOWLORIS_ROUNDS=${SLOWLORIS_ROUNDS:-2}

P_UP=18180 P_OP=18181 P_GW=18183 P_GWA=18193

cd "$(dirname "$0")/.."
ROOT=$PWD

need() { command -v "$1" >/dev/null 2>&1; }
if ! need curl; then
    echo "== installing curl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq curl >/dev/null
fi

echo "== building (release)"
cargo build --release --quiet --bin oidc-gateway --example bench_upstream --example soak_client
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${GATEWAY_BIN:-$TARGET/release/oidc-gateway}
UPSTREAM=$TARGET/release/examples/bench_upstream
CLIENT=$TARGET/release/examples/soak_client

. benches/lib.sh
bench_tmp soak

# SLOWLORIS connections in the client and in the gateway (each its own limit), plus the rest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((SLOWLORIS + 1000)) ]; then
    echo "open-file limit $(ulimit -n) is too low for SLOWLORIS=$SLOWLORIS" >&2
    exit 1
fi

echo "== starting upstream, provider, gateway (logs in $TMP)"
"$UPSTREAM" 127.0.0.1:$P_UP >"$TMP/upstream.log" 2>&1 &
PIDS+=("$!")
bench_provider "$TMP/tokens" "$CLIENT" provider 127.0.0.1:$P_OP "$TMP/tokens" "$ACCESS_TTL"
wait_http "http://127.0.0.1:$P_UP/"

cat >"$TMP/gw.toml" <<EOF
[server]
listen = "127.0.0.1:$P_GW"
public_url = "http://127.0.0.1:$P_GW"
header_read_timeout = "10s"
[admin]
listen = "127.0.0.1:$P_GWA"
[upstream]
url = "http://127.0.0.1:$P_UP"
[provider]
issuer = "$ISSUER"
client_id = "soak"
client_secret = "soak-secret"
[session]
secret = "$(head -c 32 /dev/urandom | base64)"
refresh_margin = "60s"
[[route]]
path = "/public/"
auth = "none"
EOF
# Appending (>>), so that emptying the log between the runs below really
# empties it (a plain > would keep writing at the old offset, after NULs).
RUST_LOG=${RUST_LOG:-info} "$BIN" --config "$TMP/gw.toml" >>"$TMP/gw.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_GWA/readyz")" = 200 ] && break
    sleep 0.05
done
echo "gateway pid $GW_PID; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"

log_summary() { # warn/error lines of the gateway log, by level and message
    echo "gateway log lines by level (warn/error by message):"
    grep -oE '\b(TRACE|DEBUG|INFO|WARN|ERROR)\b' "$TMP/gw.log" | sort | uniq -c | sed 's/^/  /' || true
    grep -E '\b(WARN|ERROR)\b' "$TMP/gw.log" |
        sed -E 's/^.*\b(WARN|ERROR)\b[^:]*: //; s/ [a-z_]+=.*$//' |
        sort | uniq -c | sort -rn | head -20 | sed 's/^/  /' || true
}

status=0
if [ -z "${SKIP_SOAK:-}" ]; then
    echo
    echo "== soak: $REQUESTS authenticated requests, $CONNS workers, sign-out and new login every $SESSION_REQUESTS requests, access tokens ${ACCESS_TTL}s"
    "$CLIENT" soak "http://127.0.0.1:$P_GW" "$GW_PID" "$TMP/tokens" "$REQUESTS" "$CONNS" "$SESSION_REQUESTS" || status=$?
    echo "gateway metrics (requests by route kind and status, auth outcomes):"
    curl -s "http://127.0.0.1:$P_GWA/metrics" | grep -E '^oidc_gateway_(requests_total|auth_outcomes_total|sessions)\b' | sed 's/^/  /'
    sleep 0.6
    cat "$TMP/tokens.counters"
    log_summary
    : >"$TMP/gw.log"
fi

if [ -z "${SKIP_SLOWLORIS:-}" ]; then
    echo
    for round in $(seq 1 "$SLOWLORIS_ROUNDS"); do
        echo "== slowloris round $round/$SLOWLORIS_ROUNDS: $SLOWLORIS connections for ${SLOWLORIS_HOLD}s (header_read_timeout 10s)"
        "$CLIENT" slowloris 127.0.0.1:$P_GW "$GW_PID" "$SLOWLORIS" "$SLOWLORIS_HOLD" "$TMP/tokens" || status=$?
        echo
    done
    log_summary
fi
exit $status
