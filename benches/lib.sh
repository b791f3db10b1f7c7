# What the shell benchmarks share; sourced by them (`. benches/lib.sh`),
# never run on its own. Every server is on 127.0.0.1.

# bench_tmp NAME: a fresh directory $TMP (/tmp/oidc-gateway-NAME.XXXXXX) and
# an empty list PIDS; at exit every process in PIDS is stopped (and nginx,
# when $TMP/nginx.pid exists) and $TMP removed.
bench_tmp() {
    TMP=$(mktemp -d "/tmp/oidc-gateway-$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    if [ -f "$TMP/nginx.pid" ]; then kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}

# wait_http URL [curl args]: waits until URL answers (any status), 60 s at
# the most (a gateway under valgrind starts slowly); fails after that.
wait_http() {
    local url=$1
    shift
    for _ in $(seq 1 1200); do
        curl -s -o /dev/null -k "$@" "$url" && return 0
        sleep 0.05
    done
    echo "timeout waiting for $url" >&2
    return 1
}

# bench_provider FILE COMMAND...: starts COMMAND, a benchmark provider that
# serves on port $P_OP until its standard input closes, prints its issuer
# as its first line of output ($TMP/op.out; errors in $TMP/op.log) and
# writes FILE ("" for none). Waits for discovery, the issuer and FILE, then
# sets ISSUER.
bench_provider() {
    local file=$1
    shift
    mkfifo "$TMP/op.in"
    sleep 100000 >"$TMP/op.in" &
    PIDS+=("$!")
    "$@" <"$TMP/op.in" >"$TMP/op.out" 2>"$TMP/op.log" &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$P_OP/.well-known/openid-configuration"
    # It answers before it has written FILE and printed the issuer.
    for _ in $(seq 1 200); do
        if [ -s "$TMP/op.out" ] && { [ -z "$file" ] || [ -s "$file" ]; }; then break; fi
        sleep 0.05
    done
    ISSUER=$(head -1 "$TMP/op.out")
}
