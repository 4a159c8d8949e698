# RunnerFleet — see README.md. Every target works from a clean clone with Go 1.26 and Python 3.
SHELL := /bin/bash
GO ?= go
# The local world's tools (moto_server, cfn-lint): PATH when it has moto 5.2.1 and cfn-lint 1.x,
# else a .venv that scripts/tools.sh makes once.
TOOLS_BIN = $(shell scripts/tools.sh)
WITH_TOOLS = PATH="$(if $(TOOLS_BIN),$(TOOLS_BIN):)$$PATH"
# Integration tests start one emulator per package (and tests inside run in parallel): TEST_P
# packages run side by side. CI uses 1 on its 2 cores, so timing-sensitive integration tests do not
# compete with a second package's emulators.
TEST_P ?= 2
TEST_FLAGS ?= -race -count=1 -timeout 20m -p $(TEST_P)
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can report its own
# deadline as a failure ("context deadline exceeded", no failing input; golang/go#75804, fixed in
# Go 1.27). 100000 runs take 2-8 s per target here.
FUZZTIME ?= 100000x

.PHONY: all build test unit fuzz static bench lint fmt tools emulator demo image clean

all: build test

build:
	$(GO) build ./...

tools:
	@scripts/tools.sh >/dev/null && echo "tools: moto_server and cfn-lint ready"

## fmt: every Go file is as gofmt writes it (`gofmt -w .` fixes what it lists).
fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "fmt: not gofmt-formatted (run gofmt -w .):"; echo "$$out"; exit 1; fi

## test: formatting, vet, every test, integration included (the emulator starts per package on free ports), then a short fuzz run.
test: tools fmt
	$(GO) vet ./...
	$(WITH_TOOLS) $(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz static

## static: the container image's binaries build with CGO_ENABLED=0 (what the Dockerfile does; no
## Docker engine is needed to check it).
static:
	@d=$$(mktemp -d) && CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o $$d ./cmd/worker ./cmd/publisher ./deploy/runner/probe \
	  && echo "static: worker, publisher and probe build with CGO_ENABLED=0" && rm -rf $$d

## unit: the tests that need no emulator.
unit:
	$(GO) test -short -count=1 ./messages/... ./scaling/... ./fleet/... ./handlers/... .

fuzz:
	@for target in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$target/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$target $$f ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$target || exit 1; \
	  done; \
	done

## bench: every benchmark, each with its floor or baseline measured in the same run.
## bench also runs Watermill's conformance suite at full size against the emulator (slow on moto:
## its bulk tests publish 5,000-10,000 messages); `make bench CONFORMANCE=` leaves it out.
CONFORMANCE ?= 1
bench: tools
	$(WITH_TOOLS) $(GO) test -run='^$$' -bench=. -benchmem -count=1 -timeout 60m ./...
	$(if $(CONFORMANCE),$(WITH_TOOLS) RUNNERFLEET_FULL_CONFORMANCE=1 $(GO) test -count=1 -run=Conformance -timeout 90m -v ./infra/sqs | grep -E '^(=== RUN|--- |ok|FAIL|PASS)')

lint: tools fmt
	$(GO) vet ./...
	$(WITH_TOOLS) cfn-lint deploy/runner/runner.yaml deploy/ecs/worker.yaml

## emulator: the local world in the foreground for people (AWS emulator on 127.0.0.1:4566, runner
## simulator on 127.0.0.1:9252); prints a line starting with "ready"; Ctrl-C stops both.
emulator: tools
	$(WITH_TOOLS) $(GO) run ./integration/cmd/localworld

## demo: the worker end to end on the local world of `make emulator` (fixed ports 4566, 9252, 9090;
## refuses when they are taken), configs/local.yaml: a fleet from the runner template, jobs that
## scale it out, a busy instance drained without killing its job, scale-in, spot/rebalance notices
## and bad input; exits 0 with a summary from the worker's /metrics and the emulator's log.
demo: tools
	$(GO) build -o bin/worker ./cmd/worker
	$(GO) build -o bin/publisher ./cmd/publisher
	$(WITH_TOOLS) $(GO) run ./cmd/worker/demo --bin bin --config configs/local.yaml

## image: the worker and publisher container image (Dockerfile). Needs a Docker engine (none runs on
## our test machines; CI builds it). IMAGE=name:tag picks the tag (default runnerfleet:dev).
image:
	docker build -t $(or $(IMAGE),runnerfleet:dev) .

clean:
	rm -rf .venv bin
