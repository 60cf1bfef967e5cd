# Doorstep build targets. `make test` is what CI runs (see .ci/run).
GO          ?= go
# Build with the toolchain go.mod names (its `toolchain` line: a patch
# release with the standard library's security fixes), fetched through the
# module proxy when the installed Go is older, even where `go env` says
# GOTOOLCHAIN=local. Set GOTOOLCHAIN=local to build with the installed Go
# (1.26.8 or later still builds; govulncheck then reports the fixed
# standard-library vulnerabilities).
export GOTOOLCHAIN ?= auto
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck
DATA        ?= ./data/demo
ADDR        ?= 127.0.0.1:8080

.PHONY: run test test-long bench bench-pushpull bench-slowlink lint fmt vulncheck

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

# Go benchmarks, then the HTTP load tool, then issue 17's push-then-pull
# comparison with PouchDB. Figures go in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./...
	@if [ -d ./cmd/doorstep-load ]; then $(GO) run ./cmd/doorstep-load; else echo "load tool: not built yet (cmd/doorstep-load)"; fi
	@$(MAKE) --no-print-directory bench-pushpull

# Issue 17's day's sync over an emulated 64 kbit/s link with 250 +- 100 ms
# one-way delay: Toxiproxy (TCP level) and the body-level slowLink proxy,
# packed and plain pull encodings, clean and with one lost reply. Also run
# by the first line of make bench; this target runs only them.
bench-slowlink:
	$(GO) test -run '^$$' -bench '^BenchmarkSDKDaySync(Toxiproxy|SlowLink)$$' -benchtime 1x -count=1 ./e2e

# Issue 13's backend comparison alone: HTTP ingest, a reconnect (500 ops
# pushed, 2,000 pulled) and a bootstrap of 5,000 people, on Badger and on
# PostgreSQL (a private cluster, internal/pgtest) in the same run. `make
# bench` runs it too, with every other benchmark.
bench-stores:
	$(GO) test -run '^$$' -bench '^BenchmarkStores$$' -benchtime 2s -benchmem -count=1 ./server

# Issue 17's push-then-pull workload: the SDK benchmark, then, in the same
# run, PouchDB -> express-pouchdb on the same workload. The PouchDB half
# runs only when node and its modules are present (cd bench/pouchdb && npm
# install, or POUCHDB_MODULES=/path/to/node_modules); never in make test.
# Last, bench/pushpullratio prints the same-run ratios Doorstep/PouchDB per
# phase from both outputs (kept in PUSHPULL_OUT).
POUCHDB_MODULES ?= $(CURDIR)/bench/pouchdb/node_modules
PUSHPULL_RECORDS ?= 10000
PUSHPULL_OUT ?= $(shell $(GO) env GOCACHE)/doorstep-pushpull.txt
bench-pushpull:
	@st=0; $(GO) test -run '^$$' -bench '^BenchmarkSDKPushPull$$' -benchtime 1x -count=1 ./e2e > $(PUSHPULL_OUT) 2>&1 || st=$$?; \
		cat $(PUSHPULL_OUT); exit $$st
	@if command -v node >/dev/null && [ -d "$(POUCHDB_MODULES)/pouchdb" ] && [ -d "$(POUCHDB_MODULES)/express-pouchdb" ]; then \
		NODE_PATH="$(POUCHDB_MODULES)" node bench/pouchdb/pushpull.js $(PUSHPULL_RECORDS) | tee -a $(PUSHPULL_OUT); \
	else echo "PouchDB comparison skipped: needs node and $(POUCHDB_MODULES) (cd bench/pouchdb && npm install)"; fi
	@$(GO) run ./bench/pushpullratio $(PUSHPULL_OUT)

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

# govulncheck against a vulnerability database built locally: this machine
# reaches the Go module proxy but not vuln.go.dev, so the database comes from
# the golang.org/x/vulndb module (its data/osv reports, a snapshot as of
# VULNDB_VERSION's date) indexed by that module's own cmd/indexdb. Bump
# VULNDB_VERSION to a newer pseudo-version for newer reports.
GOVULNCHECK   := $(GOBIN)/govulncheck
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB_DIR    := $(shell $(GO) env GOCACHE)/doorstep-vulndb-$(VULNDB_VERSION)

$(GOVULNCHECK):
	$(GO) install golang.org/x/vuln/cmd/govulncheck@v1.9.0

$(VULNDB_DIR)/index/db.json:
	$(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION)
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) \
		-vulns $$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv -out $(VULNDB_DIR).tmp
	rm -rf $(VULNDB_DIR) && mv $(VULNDB_DIR).tmp $(VULNDB_DIR)

# Every known vulnerability in the build, by module; fails when a required
# module has one with a fixed version (a go get away). Standard-library
# findings (fixed by a newer Go toolchain) and those without a fixed
# release are listed without failing (internal/vulngate).
vulncheck: $(GOVULNCHECK) $(VULNDB_DIR)/index/db.json
	$(GOVULNCHECK) -db file://$(VULNDB_DIR) -format json ./... | $(GO) run ./internal/vulngate

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$($(GO) mod tidy -diff 2>&1); if [ -n "$$out" ]; then echo "go.mod/go.sum not tidy (run go mod tidy):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@$(MAKE) --no-print-directory vulncheck

fmt:
	gofmt -w $$(git ls-files '*.go')
