# carelake: `make run` builds everything and runs the pipeline on sample data; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONF ?= conf/local.yaml
SCALE ?= 1
SEED ?= 42
DEFECT_RATE ?= 0.01
# Two years: the models' training dates each need a year of features, a 90-day label window and
# 30 days of follow-up (docs/ml.md); 24 months give three.
MONTHS ?= 24
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup run generate pipeline test test-all lint bench clean help serve register cluster cluster-up run-s3 stream api bench-api bi bi-setup browser
PORT ?= 10000

help:
	@echo "make run    - create .venv, install, generate sample data, run the pipeline (local disk, local[*])"
	@echo "make test   - the test suite without the end-to-end runs marked slow (about 25 min on 2 cores)"
	@echo "make test-all - the whole suite, with the end-to-end runs (stream and crash kills, lineage, Thrift, cluster)"
	@echo "make run-s3 - the same pipeline with every zone on a local S3 server (SeaweedFS), then the bucket layout"
	@echo "make serve  - SQL over JDBC/ODBC (Spark Thrift server) on 127.0.0.1:$(PORT) until Ctrl-C"
	@echo "make api    - the provider HTTP API on 127.0.0.1:$(API_PORT) until Ctrl-C (docs/api.md)"
	@echo "make bi     - Apache Superset on 127.0.0.1:$(BI_PORT) over the Thrift server, dashboards from the repository (make bi-setup once)"
	@echo "make register - refresh the SQL catalog once (no server may be running)"
	@echo "make cluster  - a Spark standalone master + worker on loopback until Ctrl-C"
	@echo "make stream - run the stages on files as they land (micro-batches) until Ctrl-C"
	@echo "make bench  - benchmark engines $(BENCH_ENGINES) at scales $(BENCH_SCALES): bench/results/<date>.json/.md/.png"
	@echo "make bench-api - provider API latency (p50/p95/p99) and throughput with hey: bench/results/<date>-api.*"
	@echo "make lint   - ruff"
	@echo "make clean  - remove ./lakehouse (the local tables and sample data)"

# Python packages at the exact versions of requirements.lock.
$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v java >/dev/null 2>&1 || { echo "Java 17+ is required by Spark: install OpenJDK 17 (see README)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test]"
	@# pip pyspark's spark-submit finds its SPARK_HOME here even when the venv is not activated.
	ln -sfn "$$($(PY) -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" $(VENV)/bin/spark-distribution
	@touch $@

# The JVM artifacts of infra/jvm/pom.xml (Delta Lake, hadoop-aws) into .jvm/jars with mvn, and
# Spark defaults that use them. Without Maven access this prints what to do and the rs engine runs.
$(VENV)/.jars: $(VENV)/.installed infra/jvm/pom.xml
	@$(PY) -m carelake.spark.jvm_deps fetch && touch $@ || true

setup: $(VENV)/.installed $(VENV)/.jars

generate: setup
	$(PY) -m carelake.cli generate --conf $(CONF) --scale $(SCALE) --seed $(SEED) --defect-rate $(DEFECT_RATE) --months $(MONTHS)

pipeline: setup
	$(PY) -m carelake.cli run --conf $(CONF)

run: generate pipeline

# The whole pipeline on a local SeaweedFS: sample data landed into the bucket with boto3, every
# zone read and written on S3. The server's data stays in $(S3_DIR) across runs. The demo's
# token key is kept beside it; real deployments take CARELAKE_TOKEN_KEY from a secret store.
S3_DIR ?= lakehouse/_s3
run-s3: generate
	@mkdir -p $(S3_DIR)
	@test -s $(S3_DIR)/token.key || $(PY) -c "import secrets; print(secrets.token_hex(32))" > $(S3_DIR)/token.key
	CARELAKE_TOKEN_KEY=$${CARELAKE_TOKEN_KEY:-$$(cat $(S3_DIR)/token.key)} \
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/$(S3_DIR)/mlflow.db} \
	$(PY) -m carelake.storage.s3server --dir $(S3_DIR) -- sh -c '\
	  $(VENV)/bin/carelake land --conf conf/s3.yaml --from lakehouse/landing && \
	  $(VENV)/bin/carelake run --conf conf/s3.yaml; status=$$?; \
	  $(VENV)/bin/carelake layout --conf conf/s3.yaml; exit $$status'

# Two test processes (pytest-xdist), one per core of the 2-core machines the suite is sized for:
# most of a test's time is one Spark driver thread or a child process starting, not both cores.
TEST_PROCESSES ?= 2
# The browser tests drive Debian's Chromium: installed with apt-get where this runs as root,
# otherwise named (those tests are then skipped with the reason).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	    echo "chromium could not be installed: the browser tests will be skipped"; \
	else echo "no chromium (sudo apt-get install chromium): the browser tests will be skipped"; fi

# make test leaves out the tests marked slow (pyproject.toml): the end-to-end runs that start
# the pipeline, a stream or a server in processes of their own. make test-all runs everything.
PYTEST_XDIST = -q -n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder
test: setup bi-setup browser
	$(PY) -m pytest $(PYTEST_XDIST) -m "not slow"

test-all: setup bi-setup browser
	$(PY) -m pytest $(PYTEST_XDIST)

serve: setup
	$(VENV)/bin/carelake serve --conf $(CONF) --port $(PORT)

# Files landing under the landing folder reach raw, processed and curated in micro-batches.
stream: setup
	$(VENV)/bin/carelake stream --conf $(CONF)

API_PORT ?= 8787
api: setup
	$(VENV)/bin/carelake api --conf $(CONF) --port $(API_PORT)

# Apache Superset in its own environment (its pins conflict with ours), installed once.
BI_VENV := .bi/venv
BI_PORT ?= 8088
$(BI_VENV)/.installed: infra/superset/requirements.lock
	$(PYTHON) -m venv $(BI_VENV)
	$(BI_VENV)/bin/python -m pip install -q --upgrade pip
	$(BI_VENV)/bin/python -m pip install -q -r infra/superset/requirements.lock
	@touch $@

bi-setup: $(BI_VENV)/.installed

bi: setup bi-setup
	$(VENV)/bin/carelake bi --conf $(CONF) --port $(BI_PORT) --thrift-port $(PORT)

register: setup
	$(VENV)/bin/carelake register --conf $(CONF)

cluster cluster-up: setup
	$(VENV)/bin/carelake cluster --workers 1 --cores 2 --memory 2g

# The load generator hey, built at a pinned version into the venv with the machine's Go
# (a hey already on PATH, e.g. Debian's package, is used when this one is absent).
HEY_VERSION := v0.1.4
HEY := $(VENV)/bin/hey
$(HEY): | setup
	@command -v go >/dev/null || { echo "make: building hey needs Go (golang.org/dl), or apt-get install hey"; exit 1; }
	GOBIN=$(CURDIR)/$(VENV)/bin go install github.com/rakyll/hey@$(HEY_VERSION)

# 16x span, each scale on each Delta engine in turn, then make run's pipeline once per engine
# (docs/benchmark.md: about an hour on a quiet 2-core machine)
BENCH_SCALES ?= 0.0625,0.25,1
BENCH_ENGINES ?= jvm,rs
BENCH_STREAM_ARGS ?= --scale 1 --rates 4,12,30 --minutes 4 --soak-minutes 15
bench: setup $(HEY)
	$(PY) -m bench.run --scales $(BENCH_SCALES) --engines $(BENCH_ENGINES)
	$(PY) -m bench.stream $(BENCH_STREAM_ARGS)
	$(PY) -m bench.api_load --scale $(BENCH_API_SCALE)

# The provider API under load: a lakehouse at BENCH_API_SCALE, then hey at 1, 8 and 32 clients
# (docs/api.md). bench/results/<date>-api.json/.md
BENCH_API_SCALE ?= 1
bench-api: setup $(HEY)
	$(PY) -m bench.api_load --scale $(BENCH_API_SCALE)

lint: setup
	$(VENV)/bin/ruff check lib tests jobs

clean:
	rm -rf lakehouse
