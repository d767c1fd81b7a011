# syntax=docker/dockerfile:1
# Tributary's container image: one binary, every role (`--role gateway,ingest,process`).
#
#   docker build -t tributary .            (or: podman build / buildah bud -t tributary .)
#   docker run --rm -p 8080:8080 tributary demo --listen 0.0.0.0:8080
#   docker compose up                      (the distributed system: compose.yaml)
#   docker build --build-arg FEATURE_FLAGS="--no-default-features --features jemalloc" \
#       -t tributary:embedded .            (embedded only: no Kafka, PostgreSQL, MongoDB,
#                                           Redis nor MQTT, and no librdkafka to build)
#
# Stage 1 builds the release binary with the Rust toolchain of the official image; stage 2
# is distroless: glibc and libgcc (all the binary links: librdkafka, zlib and jemalloc are
# built in statically), no shell, no package manager, user 65532 (nonroot). The health
# check is the binary itself (`tributary health` asks /healthz), as the image has no curl.
# The binary is stripped of its debug info (the release profile's line tables: 321 MB with
# them, 62 MB without; 44 MB embedded-only) and keeps its symbols, so a backtrace still
# names its functions.
# See docs/DEPLOY.md.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
# Cargo's feature flags for the binary; none: every connector (docs/DEPLOY.md, "Builds").
ARG FEATURE_FLAGS=""
# librdkafka's and jemalloc's builds need a C/C++ toolchain, make, perl and zlib's source
# (built in through libz-static).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ make perl pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tributary ${FEATURE_FLAGS} \
    && install -D -m 0755 target/release/tributary /out/tributary \
    && strip --strip-debug /out/tributary

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="tributary" \
      org.opencontainers.image.description="Real-time event processing and analytics in one binary" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/tributary /usr/local/bin/tributary
COPY --chown=65532:65532 deploy/docker/tributary.toml /etc/tributary/tributary.toml
# The embedded mode's data (a volume in compose.yaml); unused in the distributed mode.
WORKDIR /var/lib/tributary
USER 65532:65532
EXPOSE 8080
# stdout is not a terminal in a container: the log is ECS JSON lines on stdout.
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/tributary", "health", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/tributary"]
CMD ["run", "--config", "/etc/tributary/tributary.toml"]
