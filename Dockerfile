# Halyard image: the one `halyard` binary (node, produce, consume, proxy, sim) on Debian.
#
#   docker build -t halyard:local .
#   docker run --rm -p 61616:61616 halyard:local node --listen 0.0.0.0:61616
#
# Used by docker-compose.yml (the HA walkthrough, docs/walkthrough.md). Not built in CI:
# our machines have no Docker engine, so this file is checked by reading, not by building.

# --- build -------------------------------------------------------------------------------
# rust:1 on Debian bookworm, so the binary's glibc matches the bookworm runtime below
# (plain rust:1 follows Debian's newest release, whose glibc is newer than bookworm's).
FROM rust:1-bookworm AS build

# rdkafka builds its bundled librdkafka (2.12) from source with librdkafka's own
# ./configure (a shell script) and make; libz-sys and mimalloc compile C with cc.
# That needs make, gcc/g++, perl, python3, pkg-config and zlib headers. The rust image
# (buildpack-deps) already has all of them; they are listed so that a switch to a slim
# base keeps building. No cmake: the `cmake-build` feature of rdkafka is not used.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential perl python3 pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The workspace: every member's manifest must be present for cargo to load it.
COPY Cargo.toml Cargo.lock ./
COPY core core
COPY io io
COPY sim sim
COPY bin bin
COPY benches benches
RUN cargo build --release --locked -p halyard \
    && cp target/release/halyard /usr/local/bin/halyard \
    && /usr/local/bin/halyard --version

# --- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim

# The binary links libc, libm, libgcc_s and libz (zlib1g): all in bookworm-slim already.
RUN useradd --system --home-dir /var/lib/halyard --create-home --shell /usr/sbin/nologin halyard
COPY --from=build /usr/local/bin/halyard /usr/local/bin/halyard

USER halyard
WORKDIR /var/lib/halyard
# Defaults for `halyard node` in a container: listen on every interface, journal under
# the volume-friendly home directory. Flags and other HALYARD_* variables override them.
# Listening beyond loopback needs users: mount a security file and set
# HALYARD_SECURITY_FILE=/etc/halyard/security.toml (docs/security.md), or set
# HALYARD_ALLOW_ANONYMOUS=true on purpose; without either the node refuses to start.
ENV HALYARD_LISTEN=0.0.0.0:61616 \
    HALYARD_DATA_DIR=/var/lib/halyard/data
EXPOSE 61616
VOLUME ["/var/lib/halyard"]

ENTRYPOINT ["/usr/local/bin/halyard"]
CMD ["node"]
