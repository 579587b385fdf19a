# syntax=docker/dockerfile:1
#
# The mxfleet image: one static-ish binary on debian-slim, running as an unprivileged
# user. Build from the repository root:
#
#   docker build -t mxfleet .
#
# The same image runs a fleet member (the default command), the admin CLI
# (`docker run --rm mxfleet cluster status …`), and the compose fleet's test primary
# (`mxfleet test-primary`). See deploy/README.md.

# --- Builder ------------------------------------------------------------------------------
# The toolchain CI uses. protox compiles the .proto files in-process: no protoc needed.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions in Cargo.lock. The cache mounts keep the
# registry and the target directory between builds (BuildKit); the binary is copied out
# of the cache mount, which does not survive the RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mxfleet \
    && install -D -m 0755 target/release/mxfleet /out/mxfleet

# --- Runtime ------------------------------------------------------------------------------
# debian-slim rather than distroless: the Kubernetes manifests render each pod's config
# with sh and sed (deploy/kubernetes/mxfleet.yaml).
FROM debian:bookworm-slim
# ca-certificates: mxfleet itself checks primaries against compiled-in webpki roots
# (plus smtp_tls_CAfile); the system bundle is there for an smtp_tls_CAfile that names
# /etc/ssl/certs/ca-certificates.crt. Nothing else is installed, and nothing is
# fetched at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001), so that Kubernetes' runAsUser/fsGroup and host bind mounts
# can name it. /var/lib/mxfleet is node.data_dir; /var/lib/mxfleet-primary is where the
# test primary writes. Named volumes mounted there start with this ownership.
RUN groupadd --system --gid 10001 mxfleet \
    && useradd --system --uid 10001 --gid mxfleet --home-dir /var/lib/mxfleet \
        --shell /usr/sbin/nologin mxfleet \
    && install -d -m 0700 -o mxfleet -g mxfleet /var/lib/mxfleet /var/lib/mxfleet-primary \
    && install -d -m 0750 -o root -g mxfleet /etc/mxfleet
COPY --from=builder /out/mxfleet /usr/local/bin/mxfleet
USER mxfleet:mxfleet
WORKDIR /var/lib/mxfleet
# SMTP, the peer (Raft/replication) port, the admin API and Prometheus /metrics, as the
# compose and Kubernetes configs use them. Binding 25 as a non-root user needs
# net.ipv4.ip_unprivileged_port_start <= 25 in the container's network namespace
# (Docker's default is 0; compose and Kubernetes set it explicitly).
EXPOSE 25 7401 7402 9425
# SIGTERM starts the node's 30 s drain: give `docker stop` a longer --time (compose
# sets stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["mxfleet"]
CMD ["serve", "--config", "/etc/mxfleet/node.toml"]
