# Patina agent image: a static binary on distroless, run as a non-root user.
#   docker build -t patina .
#   docker run -v patina-data:/var/lib/patina -p 8080:8080 patina --schema /etc/patina/schema
# deploy/compose.yaml runs a 3-node cluster with mutual TLS.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The one build command. CI runs this exact line (cmd/patina's buildPatina reads it from
# this file): a static binary (modernc SQLite is pure Go, so CGO is off), no local paths,
# no symbol table.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/patina ./cmd/patina
RUN mkdir -p /out/data /out/tls

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/patina /usr/local/bin/patina
# Owned by the image's non-root user (65532), so named volumes mounted there are writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/patina
COPY --from=build --chown=65532:65532 /out/tls /etc/patina/tls
USER 65532:65532
VOLUME ["/var/lib/patina"]
ENV PATINA_DATA_DIR=/var/lib/patina \
    PATINA_API_ADDR=0.0.0.0:8080 \
    PATINA_GOSSIP_ADDR=0.0.0.0:8787 \
    PATINA_QUIC_ADDR=0.0.0.0:8788 \
    PATINA_LOG_FORMAT=json
EXPOSE 8080/tcp 8787/tcp 8787/udp 8788/udp
# patina health reads the same PATINA_API_* variables as the agent (address, token, TLS).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/patina", "health", "--api-addr", "127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/patina", "agent"]
