# syntax=docker/dockerfile:1
# Doorstep server image: a static Go binary on distroless, run as non-root.
#   docker build -t doorstep .
#   docker run -p 8080:8080 -v doorstep-data:/data \
#     -v /etc/doorstep/store.key:/run/secrets/store.key:ro \
#     -e DOORSTEP_ENCRYPTION_KEY_FILE=/run/secrets/store.key doorstep
# Every serve flag can be given as a DOORSTEP_* variable (doorstep help).
# TLS is terminated in front of it (docs/OPERATIONS.md).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/doorstep ./cmd/doorstep \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/doorstep /usr/local/bin/doorstep
# The data directory (records, auth, keys): a volume, owned by the image's
# nonroot user (uid 65532) so that a fresh named volume is writable.
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME ["/data"]
ENV DOORSTEP_DATA=/data \
    DOORSTEP_ADDR=0.0.0.0:8080 \
    DOORSTEP_LOG_FORMAT=json
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/doorstep"]
CMD ["serve"]
