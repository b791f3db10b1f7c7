# syntax=docker/dockerfile:1
# oidc-gateway runtime image: the release binary on distroless (glibc, CA
# roots, no shell), running as the numeric non-root user 65532.
#
#   docker build -t oidc-gateway:0.1.0 .
#
# Stage 1 builds the dependencies alone, from Cargo.toml + Cargo.lock and
# dummy targets, so that a change to src/ reuses that layer and rebuilds only
# this crate. Pin the base images by digest in your own registry for
# reproducible builds.

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src

# --- dependency layer: manifests and empty targets only -------------------
COPY Cargo.toml Cargo.lock ./
# Every target named in Cargo.toml must exist for cargo to read it: the
# image builds only the binary, so the [[bench]], [[example]] and [[test]]
# sections (development targets, all behind the `devtools` feature) are
# dropped from the manifest, here and in the next stage alike.
RUN sed -i '/^\[\[\(bench\|example\|test\)\]\]/,/^$/d' Cargo.toml \
 && mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && cargo build --release --locked --no-default-features --bin oidc-gateway \
 && rm -rf src

# --- the crate itself ------------------------------------------------------
COPY src ./src
# COPY keeps the files' own modification times, which may be older than the
# dummy build above: touch them so cargo rebuilds this crate. Without the
# development tools (no dev provider, no `demo`, no test key).
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --no-default-features --bin oidc-gateway \
 && ./target/release/oidc-gateway --version

# --- runtime ---------------------------------------------------------------
# cc = glibc + libgcc + CA certificates; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/oidc-gateway /usr/local/bin/oidc-gateway
# Numeric, so that the kubelet can verify runAsNonRoot without a passwd
# lookup ("image has non-numeric user" otherwise). 65532 is distroless'
# "nonroot" user and group.
USER 65532:65532
# The main listener (server.listen, default 0.0.0.0:8443). The admin listener
# (/healthz /readyz /metrics) defaults to 127.0.0.1:9090, and this image
# ships no config that changes that, so it is not EXPOSEd: a deployment that
# sets [admin] listen = "0.0.0.0:9090" (as deploy/kubernetes/ does, for the
# kubelet's probes and Prometheus) declares the port itself.
EXPOSE 8443
# The binary writes nothing to disk: the root filesystem can be read-only.
# The config is mounted at /etc/oidc-gateway/gateway.toml (a ConfigMap in
# deploy/kubernetes/), secrets as files under /var/run/secrets/.
ENTRYPOINT ["/usr/local/bin/oidc-gateway"]
CMD ["--config", "/etc/oidc-gateway/gateway.toml"]
