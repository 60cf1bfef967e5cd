# Doorstep build targets. `make test` is what CI runs (see .ci/run).
GO          ?= go
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck
DATA        ?= ./data/demo
ADDR        ?= 127.0.0.1:8080

.PHONY: run test test-long bench lint fmt

# A server on an embedded Badger in $(DATA), seeded with the demo teams.
run:
	$(GO) run ./cmd/doorstep serve --demo --data $(DATA) --addr $(ADDR)

# All tests with the race detector; fuzz targets run their seed corpora.
test:
	$(GO) test -race -count=1 -timeout 30m ./...

# The property, simulation and crash tests with far more random cases
# (only these packages define -long).
LONG_PKGS := ./crdt ./schema ./sync ./demo ./e2e
test-long:
	$(GO) test -count=1 -timeout 2h $(LONG_PKGS) -args -long

# Go benchmarks, then the HTTP load tool. Figures go in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./...
	@if [ -d ./cmd/doorstep-load ]; then $(GO) run ./cmd/doorstep-load; else echo "load tool: not built yet (cmd/doorstep-load)"; fi

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$($(GO) mod tidy -diff 2>&1); if [ -n "$$out" ]; then echo "go.mod/go.sum not tidy (run go mod tidy):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
