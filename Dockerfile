# Build: the release binary, from the locked dependencies.
# The locked dependencies need Rust 1.90 or newer (redb 4.6 declares rust-version 1.90).
FROM rust:1.90-slim-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY actors/ actors/
# Every workspace member must be present for cargo to load the workspace, even one not built here.
COPY bench/ bench/
COPY support/ support/
COPY src/ src/
RUN cargo build --release --locked --bin cpe-config

# Run: the binary alone, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 cpe \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cpe \
    && mkdir -p /app/certs /app/data \
    && chown 10001:10001 /app/certs /app/data
WORKDIR /app
COPY --from=builder /build/target/release/cpe-config /usr/local/bin/cpe-config
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/cpe-config"]
