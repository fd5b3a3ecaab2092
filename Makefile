# kmem-exporter: `make run` serves this host's metrics; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test test-image image image-tools mixin prometheusrule dashboard-configmaps tools debugfs benchmark \
	benchmark-worst-case benchmark-hostile benchmark-scrape-latency benchmark-fleet node-exporter screenshots lab lab-ci lab-setup clean

run: $(VENV)/.installed
	$(BIN)/kmem-exporter $(ARGS)

test: $(VENV)/.installed-test tools node-exporter debugfs
	$(BIN)/pytest $(PYTEST_ARGS)

# Builds the container image with buildah from a local debootstrap base and runs it on this host with podman and runc,
# as the Kubernetes DaemonSets would (slow; root).
test-image: $(VENV)/.installed-test tools image-tools
	$(BIN)/pytest tests/image $(PYTEST_ARGS)

# The container image with docker (buildah without docker; IMAGE_ARGS go to the build, e.g.
# IMAGE_ARGS="--build-arg PYTHON_IMAGE=localhost/kmem-exporter-base:bookworm"), tagged with the package's version.
# Its labels take the version from exporter/kmem_exporter/__init__.py, the revision from git, the creation time (RFC 3339).
IMAGE ?= kmem-exporter
IMAGE_BUILDER ?= $(shell command -v docker || command -v buildah || echo docker)
IMAGE_ARGS ?=
VERSION = $(shell PYTHONPATH=exporter $(PYTHON) -c 'import kmem_exporter; print(kmem_exporter.__version__)')
REVISION = $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
CREATED = $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
image:
	$(IMAGE_BUILDER) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	  --build-arg CREATED=$(CREATED) $(IMAGE_ARGS) -t $(IMAGE):$(VERSION) .

# buildah builds the image; podman runs it with runc (tests/image/pods.py says why not crun).
image-tools:
	@if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null || ! command -v podman >/dev/null \
	    || ! command -v runc >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends buildah debootstrap \
	    podman runc; \
	fi

# The status page's screenshots in docs/ (shown in the README), taken by headless chromium from the real exporter on
# the fragmented and the healthy fixture trees.
screenshots: $(VENV)/.installed-test tools
	SCREENSHOTS=docs $(BIN)/pytest tests/test_status_page.py -k browser $(PYTEST_ARGS)

# Renders the monitoring mixin (mixin/) into alerts/*.yaml and dashboards/*.json, then the Kubernetes files made
# from them.
mixin: $(VENV)/.installed-test
	$(BIN)/python mixin/render.py
	$(MAKE) prometheusrule dashboard-configmaps

prometheusrule: $(VENV)/.installed
	$(BIN)/python deploy/kubernetes/generate_prometheusrule.py

dashboard-configmaps: $(VENV)/.installed
	$(BIN)/python deploy/kubernetes/generate_dashboards.py

# Side by side with Debian's node_exporter: this host, then the generated worst-case RHEL 7 node (fewer scrapes:
# one unfolded worst-case scrape takes seconds; then 60 idle seconds for the background passes). ARGS go to both.
WORST_CASE_SCRAPES ?= 20
benchmark: $(VENV)/.installed node-exporter
	$(BIN)/python benchmarks/compare_node_exporter.py $(ARGS)
	$(BIN)/python benchmarks/compare_node_exporter.py --worst-case -n $(WORST_CASE_SCRAPES) --idle 60 $(ARGS)

benchmark-worst-case: $(VENV)/.installed node-exporter
	$(BIN)/python benchmarks/compare_node_exporter.py --worst-case -n $(WORST_CASE_SCRAPES) --idle 60 $(ARGS)

# Load, soak and hostile clients against kmem-exporter on this host (ARGS=--quick for a one-minute run).
benchmark-hostile: $(VENV)/.installed
	$(BIN)/python benchmarks/hostile_clients.py $(ARGS)

benchmark-scrape-latency: $(VENV)/.installed
	$(BIN)/python benchmarks/scrape_latency.py $(ARGS)

# The fleet panels' query time over 6 hours of 1,000 simulated nodes in a backfilled Prometheus, with and without
# the recording rules (ARGS: --nodes, --hours, --work; the history, about 8 GB, is kept in --work and reused).
benchmark-fleet: $(VENV)/.installed-test tools
	$(BIN)/python benchmarks/fleet_queries.py $(ARGS)

# The kernel lab (docs/lab.md): every scenario on Debian's 5.10, 6.1 and 6.12 kernels under QEMU (TCG), judged by a
# real Prometheus with the mixin's rules; the table, plots and artifacts go to lab/runs/. `make lab-ci` is the
# shorter pass that CI runs (every scenario on 6.1, smaller counts, same checks). LAB_ARGS go to both
# (e.g. LAB_ARGS="--kernels 6.12 --scenarios memcg"). Needs root: it installs packages and boots guests.
LAB_ARGS ?=
lab: $(VENV)/.installed-lab tools lab-setup
	$(BIN)/python -m lab --profile full $(LAB_ARGS)

lab-ci: $(VENV)/.installed-lab tools lab-setup
	$(BIN)/python -m lab --profile ci --kernels 6.1 $(LAB_ARGS)

lab-setup:
	$(SUDO) sh lab/setup.sh

# Debian's node_exporter, for `make benchmark` and the tests of docs/node_exporter.md.
node-exporter:
	@command -v prometheus-node-exporter >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus-node-exporter; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-lab: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[lab]'
	touch $@

# Debian's prometheus brings promtool and the Prometheus server; prometheus-alertmanager brings amtool; fuse3
# brings libfuse3 and fusermount3 for the tests' files whose reads block (tests/stuck_files.py); kubectl renders
# the kustomize base and components (tests/test_deploy_kubernetes.py); chromium looks at the status page
# (tests/test_status_page.py).
tools:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
	    || ! command -v amtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager; \
	fi
	@command -v ip >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends iproute2; }
	@command -v fusermount3 >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends fuse3; }
	@command -v kubectl >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends kubectl; }
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }
	@if ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends curl openssl; \
	fi

# The extfrag tests compare computed indices with the kernel's own debugfs files when debugfs can be mounted.
debugfs:
	@if [ "$$(id -u)" = 0 ] && [ -d /sys/kernel/debug ] && ! mountpoint -q /sys/kernel/debug; then \
	  mount -t debugfs none /sys/kernel/debug || echo "debugfs could not be mounted; live extfrag comparison will fail"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
