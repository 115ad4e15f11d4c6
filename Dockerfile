# syntax=docker/dockerfile:1.7
#
# The two Hookguard images, from one multi-stage build:
#
#   docker build --target operator -t ghcr.io/hookguard/hookguard-operator:0.1.0 .
#   docker build --target sidecar  -t ghcr.io/hookguard/hookguard-sidecar:0.1.0  .
#
# Multi-arch, pushed (BuildKit):
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target operator \
#     -t ghcr.io/hookguard/hookguard-operator:0.1.0 --push .
#   docker buildx build --platform linux/amd64,linux/arm64 --target sidecar \
#     -t ghcr.io/hookguard/hookguard-sidecar:0.1.0 --push .
#
# Those are the chart's (and the operator's --sidecar-image) defaults; pushing elsewhere, set
# --set operator.image.repository=<registry>/hookguard-operator and
# --set sidecar.image.repository=<registry>/hookguard-sidecar (the tag defaults to the chart's
# appVersion).
#
# NOTE: this file has not been built in the development environment, which has no container
# engine; the binaries it builds are the ones `cargo build --release` builds and the tests run.
#
# Runtime: gcr.io/distroless/cc-debian12:nonroot (glibc and libgcc only: no shell, no package
# manager), user 65532 as the chart's securityContext expects. TLS is rustls with ring, so no
# OpenSSL is needed at run time.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The whole workspace: Cargo.lock pins every dependency (--locked).
COPY . .
# Cache the registry and the target folder across builds (BuildKit cache mounts); copy the
# binaries out of the cached folder, as it is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hookguard-operator -p hookguard-sidecar \
 && mkdir -p /out \
 && cp target/release/hookguard-operator target/release/hookguard-sidecar /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
LABEL org.opencontainers.image.title="hookguard-operator" \
      org.opencontainers.image.description="Reconciles WebhookEndpoints and injects the Hookguard sidecar" \
      org.opencontainers.image.source="https://github.com/hookguard/hookguard" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/hookguard-operator /usr/local/bin/hookguard-operator
USER 65532:65532
# 8080: metrics and health; 9443: the admission webhook (HTTPS).
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/hookguard-operator"]
CMD ["run"]

FROM gcr.io/distroless/cc-debian12:nonroot AS sidecar
LABEL org.opencontainers.image.title="hookguard-sidecar" \
      org.opencontainers.image.description="Verifies webhook signatures, rejects replays and duplicates, proxies to the app" \
      org.opencontainers.image.source="https://github.com/hookguard/hookguard" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/hookguard-sidecar /usr/local/bin/hookguard-sidecar
USER 65532:65532
# 9880: webhook traffic; 9881: /healthz, /readyz, /metrics.
EXPOSE 9880 9881
ENTRYPOINT ["/usr/local/bin/hookguard-sidecar"]
