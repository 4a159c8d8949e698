# syntax=docker/dockerfile:1
# RunnerFleet worker and publisher: static binaries (CGO_ENABLED=0) on distroless, as non-root.
# Build: make image (needs a Docker engine). Bases are pinned by digest; bump the tag and the
# digest together in one reviewed commit.
#
# Where the digests come from: both appear in public Dockerfiles pinning these tags (the
# distroless one in several unrelated repositories); check them against the registry before a
# release: docker buildx imagetools inspect <image>:<tag>.
ARG GO_IMAGE=golang:1.26-alpine@sha256:f1ddd9fe14fffc091dd98cb4bfa999f32c5fc77d2f2305ea9f0e2595c5437c14
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -ldflags "-s -w" -o /out/worker ./cmd/worker && \
    go build -ldflags "-s -w" -o /out/publisher ./cmd/publisher && \
    go build -ldflags "-s -w" -o /out/probe ./deploy/runner/probe

FROM ${BASE_IMAGE}
COPY --from=build /out/worker /out/publisher /out/probe /usr/local/bin/
# distroless's nonroot user (65532); the ECS task definition names the same.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
