#!/usr/bin/env bash
# CPU cost of trace export per request, as instructions counted by
# valgrind's callgrind (repeatable on a loaded machine, unlike wall time).
#
#   bash benches/trace_cost.sh
#
# Builds the release binary with `--features otel` (and the bench helpers),
# then starts on 127.0.0.1 only: the fast bench upstream, the development
# provider, and a small OTLP/HTTP receiver (python3, answers every
# POST /v1/traces with 200). The gateway runs under callgrind with one Tokio
# worker (the current-thread scheduler) and the access log off, twice per
# setting: with N1 and with N2 proxied requests (`GET /public/x` with a
# sampled `traceparent`, one keep-alive connection, curl). Per request:
# (Ir(N2) - Ir(N1)) / (N2 - N1), all the process's threads included (the
# batch exporter's too); start-up and shutdown cancel out.
#
# Settings (environment): N1=500 N2=2500 CARGO_TARGET_DIR (default: target).
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-500}
N2=${N2:-2500}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

echo "== building (release, --features otel)"
cargo build --release --quiet --features otel --bin oidc-gateway --example bench_upstream --example bench_provider
BIN=$TARGET/release/oidc-gateway

. benches/lib.sh
bench_tmp trace-cost

P_UP=18180 P_OP=18181 P_OTLP=18182 P_GW=18183 P_GWA=18193
"$TARGET/release/examples/bench_upstream" 127.0.0.1:$P_UP >"$TMP/upstream.log" 2>&1 &
PIDS+=("$!")
bench_provider "" "$TARGET/release/examples/bench_provider" serve 127.0.0.1:$P_OP "$TMP/token"
python3 - "$P_OTLP" >"$TMP/otlp.log" 2>&1 <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
        print("export", self.path, flush=True)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
PIDS+=("$!")
wait_http "http://127.0.0.1:$P_UP/"

config() { # tracing section
    cat <<EOF
[server]
listen = "127.0.0.1:$P_GW"
public_url = "http://127.0.0.1:$P_GW"
shutdown_timeout = "5s"
[admin]
listen = "127.0.0.1:$P_GWA"
[upstream]
url = "http://127.0.0.1:$P_UP"
[provider]
issuer = "$ISSUER"
client_id = "gateway"
client_secret = "bench-secret"
[session]
secret = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
$1
[[route]]
path = "/public/"
auth = "none"
EOF
}
config "" >"$TMP/off.toml"
config "[tracing]
otlp_endpoint = \"http://127.0.0.1:$P_OTLP\"" >"$TMP/on.toml"

run() { # setting requests -> instructions
    local setting=$1 n=$2 out="$TMP/cg.$1.$2"
    TOKIO_WORKER_THREADS=1 RUST_LOG=info,oidc_gateway::access=off \
        valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" --config "$TMP/$setting.toml" 2>"$TMP/gw.$setting.$n.log" &
    local pid=$!
    wait_http "http://127.0.0.1:$P_GWA/readyz"
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_GWA/readyz")" = 200 ] && break
        sleep 0.1
    done
    : >"$TMP/urls"
    for _ in $(seq 1 "$n"); do echo "url = \"http://127.0.0.1:$P_GW/public/x\"" >>"$TMP/urls"; done
    curl -s -o /dev/null -H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" \
        -w '%{http_code}\n' -K "$TMP/urls" >"$TMP/codes.$setting.$n"
    local ok
    ok=$(grep -c '^200$' "$TMP/codes.$setting.$n" || true)
    [ "$ok" = "$n" ] || { echo "$setting: $ok of $n requests answered 200" >&2; cat "$TMP/gw.$setting.$n.log" >&2; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || true
    grep -m1 '^summary:' "$out" | awk '{print $2}'
}

for setting in off on; do
    a=$(run "$setting" "$N1")
    b=$(run "$setting" "$N2")
    per=$(( (b - a) / (N2 - N1) ))
    echo "tracing $setting: Ir($N1)=$a Ir($N2)=$b -> $per instructions per request"
    eval "per_$setting=$per"
done
echo "exports received by the OTLP receiver: $(grep -c '^export /v1/traces' "$TMP/otlp.log" || true)"
echo "trace export adds $(( per_on - per_off )) instructions per request ($(( (per_on - per_off) * 100 / per_off ))%)"
