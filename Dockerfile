# syntax=docker/dockerfile:1
# tickstream container image: a release build in a slim, non-root runtime.
# How to build, run and deploy it: docs/DEPLOYMENT.md. scripts/deploy-checks lints this
# file (hadolint) and checks the facts below that the runtime-contract test relies on.

# --- build: dependencies are compiled in their own layer, cached until Cargo.* change.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Stub targets so `cargo build` can resolve and compile only the dependencies. Cargo
# needs a file for every target declared in Cargo.toml without a `path` (the benches);
# scripts/deploy-checks fails when one is added there and not here.
RUN mkdir -p src/bin benches config frontend \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/tickstream-bench.rs \
    && touch src/lib.rs benches/wire_bytes.rs benches/idle_memory.rs benches/ingest_throughput.rs benches/security_cost.rs benches/hot_path.rs benches/cluster.rs benches/flush_w1.rs benches/feed_throughput.rs benches/restore.rs benches/ack_latency.rs \
    && cargo build --release --locked --bin tickstream \
    && rm -rf src benches
COPY src ./src
COPY config ./config
COPY frontend ./frontend
COPY benches ./benches
# The stubs left newer artefacts behind; touch so cargo rebuilds our crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin tickstream \
    && strip target/release/tickstream

# --- runtime: only the binary (frontend, default config and universe are embedded)
#     and config/ for operators who overlay production.toml.
FROM debian:bookworm-slim
# A fixed uid and gid (10001), so Kubernetes' runAsNonRoot can verify the numeric USER
# and volumes can be given to this exact user.
RUN groupadd --system --gid 10001 tickstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tickstream \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tickstream
# /app and config/ stay owned by root: the server only reads its working directory.
# It writes only the market state (quotes, bars, run-time symbols, publishers' seq)
# to /var/lib/tickstream, a volume owned by the runtime user: mount one there to
# keep it across containers (docs/DEPLOYMENT.md).
WORKDIR /app
COPY --from=build /src/target/release/tickstream /usr/local/bin/tickstream
COPY config ./config
USER 10001:10001
ENV TICKSTREAM__SERVER__HOST=0.0.0.0 \
    TICKSTREAM__SERVER__PORT=8080 \
    TICKSTREAM__STORE__DATA_DIR=/var/lib/tickstream
VOLUME ["/var/lib/tickstream"]
EXPOSE 8080
# `tickstream healthcheck` probes /healthz of the server in this container (0.0.0.0
# means loopback to it), so the image needs no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["tickstream", "healthcheck"]
# SIGTERM: every viewer gets close 1001, then the process exits 0 within
# server.shutdown_timeout_ms (5 s by default).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tickstream"]
CMD ["serve"]
