# Small runtime image: the release binary on distroless (glibc, CA roots, nonroot).
# Build: docker build -t oidc-gateway .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Without the development tools (no dev provider, no `demo`, no test key).
RUN cargo build --release --locked --no-default-features --bin oidc-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/oidc-gateway /usr/local/bin/oidc-gateway
USER nonroot
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/oidc-gateway"]
CMD ["--config", "/etc/oidc-gateway/gateway.toml"]
