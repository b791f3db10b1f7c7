#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure
# that does not move with the load of a shared machine (wall-clock and CPU
# time do), for A/B comparisons of the hot path.
#
#   bash benches/instructions.sh                       # the release build of this tree
#   BINS="/tmp/gw-before /tmp/gw-after" bash benches/instructions.sh   # A/B, alternating
#
# Starts on 127.0.0.1 the bench upstream (examples/bench_upstream.rs) and the
# development provider (examples/bench_provider.rs), natively; then each
# gateway binary under `valgrind --tool=callgrind` (HTTP, memory store, one
# Tokio worker: the current-thread scheduler, as when pinned to one core),
# logs in through it with curl, and for each target (session cookie, cached
# bearer JWT, `/public/`): $WARMUP requests, callgrind's counters zeroed,
# exactly $REQUESTS keep-alive requests with `h2load --h1 -c $CONNS`
# (each must answer 200), the counters dumped. Prints the instructions per
# request of the whole gateway process (all threads, kernel not included).
#
# Settings: REQUESTS=20000 WARMUP=2000 CONNS=8 BINS (default: the release
# binary in CARGO_TARGET_DIR, built first; SKIP_BUILD=1: use the binaries
# there as they are) KEEP=DIR (keep the callgrind dumps
# there, for `callgrind_annotate DIR/<bin>-<target>.out`).
#
# Function names: valgrind 3.19 cannot read the symbols of binaries linked by
# rust-lld, so for `callgrind_annotate` build with GNU ld and symbols, e.g.
#   export CARGO_TARGET_DIR=/tmp/target-prof CARGO_PROFILE_RELEASE_STRIP=none \
#          CARGO_PROFILE_RELEASE_DEBUG=line-tables-only RUSTFLAGS="-C link-arg=-fuse-ld=bfd"
#   KEEP=/tmp/cg bash benches/instructions.sh
#   callgrind_annotate --inclusive=yes /tmp/cg/<bin>-session.out
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
CONNS=${CONNS:-8}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export RUST_LOG=${RUST_LOG:-info,oidc_gateway::access=off}

for tool in valgrind callgrind_control h2load curl; do
    command -v "$tool" >/dev/null || {
        echo "$tool is needed (apt-get install valgrind nghttp2-client curl)" >&2
        exit 1
    }
done

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --locked --bin oidc-gateway --example bench_upstream --example bench_provider
fi
BINS=${BINS:-$TARGET/release/oidc-gateway}

P_UP=18180 P_OP=18181 P_GW=18183 P_GWA=18193
. benches/lib.sh
bench_tmp instr

"$TARGET/release/examples/bench_upstream" 127.0.0.1:$P_UP >"$TMP/upstream.log" 2>&1 &
PIDS+=("$!")
bench_provider "$TMP/token" "$TARGET/release/examples/bench_provider" serve 127.0.0.1:$P_OP "$TMP/token"
wait_http "http://127.0.0.1:$P_UP/"
TOKEN=$(cat "$TMP/token")

cat >"$TMP/gw.toml" <<EOF
[server]
listen = "127.0.0.1:$P_GW"
public_url = "http://127.0.0.1:$P_GW"
[admin]
listen = "127.0.0.1:$P_GWA"
[upstream]
url = "http://127.0.0.1:$P_UP"
[provider]
issuer = "$ISSUER"
client_id = "bench"
client_secret = "bench-secret"
[session]
secret = "$(head -c 32 /dev/urandom | base64)"
[[route]]
path = "/public/"
auth = "none"
EOF

run() { # url header: $REQUESTS requests, fails unless all answered 200
    local url=$1 hdr=$2 n=$3 out
    out=$(h2load --h1 -n "$n" -c "$CONNS" -m 1 ${hdr:+-H "$hdr"} "$url" 2>&1)
    if ! grep -q "status codes: $n 2xx" <<<"$out"; then
        echo "not every request answered 2xx: $url" >&2
        echo "$out" >&2
        exit 1
    fi
}

declare -A RESULT
for bin in $BINS; do
    name=$(basename "$bin")
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$TMP/$name.%p.out" \
        "$bin" --config "$TMP/gw.toml" >"$TMP/$name.log" 2>&1 &
    GW=$!
    PIDS+=("$GW")
    for _ in $(seq 1 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_GWA/readyz")" = 200 ] && break
        sleep 0.1
    done
    jar="$TMP/jar.$name"
    curl -s -o /dev/null -c "$jar" -b "$jar" -L --max-redirs 10 "http://127.0.0.1:$P_GW/oauth2/start?rd=/app/"
    COOKIE=$(awk '$6 == "oidc-gateway" {printf "%s=%s", $6, $7}' "$jar")
    [ -n "$COOKIE" ] || {
        echo "login failed" >&2
        exit 1
    }
    for t in "session|http://127.0.0.1:$P_GW/app/x|cookie: $COOKIE" \
        "bearer|http://127.0.0.1:$P_GW/api/x|authorization: Bearer $TOKEN" \
        "public|http://127.0.0.1:$P_GW/public/x|"; do
        IFS='|' read -r target url hdr <<<"$t"
        run "$url" "$hdr" "$WARMUP"
        callgrind_control -z "$GW" >/dev/null
        run "$url" "$hdr" "$REQUESTS"
        callgrind_control -d "$target" "$GW" >/dev/null
        dump=$(ls -t "$TMP/$name.$GW.out".* | head -1)
        total=$(awk '/^summary:/ {print $2}' "$dump")
        RESULT[$name|$target]=$((total / REQUESTS))
        printf '%-24s %-8s %10d instructions/request\n' "$name" "$target" "${RESULT[$name|$target]}"
        if [ -n "${KEEP:-}" ]; then
            mkdir -p "$KEEP"
            cp "$dump" "$KEEP/$name-$target.out"
        fi
    done
    kill "$GW"
    wait "$GW" 2>/dev/null || true
done
