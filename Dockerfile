# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run as a non-root user in a
# distroless image (glibc + CA certificates, no shell, no package manager).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# build.rs compiles the gRPC interface with protoc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler=3.21.12-3+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
RUN cargo build --release --locked --bin secret-manager \
    && strip target/release/secret-manager

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release/secret-manager /usr/local/bin/secret-manager
USER 65532:65532
ENV HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=9000 \
    LOG_FORMAT=json
EXPOSE 8000 9000
# The binary probes /health/live itself, so the image needs no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/secret-manager", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/secret-manager"]
CMD ["serve"]
