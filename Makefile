# carelake: `make run` builds everything and runs the pipeline on sample data; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONF ?= conf/local.yaml
SCALE ?= 1
SEED ?= 42
DEFECT_RATE ?= 0.01
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup run generate pipeline test lint bench clean help serve register cluster
PORT ?= 10000

help:
	@echo "make run    - create .venv, install, generate sample data, run the pipeline (local disk, local[*])"
	@echo "make test   - run the test suite"
	@echo "make serve  - SQL over JDBC/ODBC (Spark Thrift server) on 127.0.0.1:$(PORT) until Ctrl-C"
	@echo "make register - refresh the SQL catalog once (no server may be running)"
	@echo "make cluster  - a Spark standalone master + worker on loopback until Ctrl-C"
	@echo "make lint   - ruff"
	@echo "make clean  - remove ./lakehouse (the local tables and sample data)"

$(VENV)/.installed: pyproject.toml
	@command -v java >/dev/null 2>&1 || { echo "Java 17+ is required by Spark: install OpenJDK 17 (see README)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

setup: $(VENV)/.installed

generate: setup
	$(PY) -m carelake.cli generate --conf $(CONF) --scale $(SCALE) --seed $(SEED) --defect-rate $(DEFECT_RATE)

pipeline: setup
	$(PY) -m carelake.cli run --conf $(CONF)

run: generate pipeline

test: setup
	$(PY) -m pytest -q

serve: setup
	$(VENV)/bin/carelake serve --conf $(CONF) --port $(PORT)

register: setup
	$(VENV)/bin/carelake register --conf $(CONF)

cluster: setup
	$(VENV)/bin/carelake cluster --workers 1 --cores 2 --memory 2g

lint: setup
	$(VENV)/bin/ruff check lib tests jobs

clean:
	rm -rf lakehouse
