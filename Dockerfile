# syntax=docker/dockerfile:1
# The ociregistry image: a release build of the server on distroless (glibc, CA certificates, no shell), running
# as uid/gid 65532 with its cache at /var/lib/ociregistry.
#
#   docker build -t ociregistry .
#   docker run -p 8080:8080 ociregistry
#   docker run -p 8080:8080 -v $PWD/registry-config.yaml:/etc/ociregistry/config.yaml:ro \
#     ociregistry --config-file /etc/ociregistry/config.yaml serve

# At least the workspace's rust-version and every locked crate's (scripts/chart-test checks).
ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --bin ociregistry \
 && install -D -m 0755 target/release/ociregistry /out/ociregistry \
 && mkdir -p /out/var/lib/ociregistry

# Debian 12 like the build stage, so the binary finds the glibc it was linked against.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ociregistry /ociregistry
COPY --from=build --chown=65532:65532 /out/var/lib/ociregistry /var/lib/ociregistry
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/ociregistry"]
CMD ["serve"]
