# The two commands (see README): `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AIRFLOW_PORT ?= 8080

.PHONY: install run test lint bench browser airflow clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[airflow,dev]"
	touch $(STAMP)

run: install
	$(BIN)/vnnews crawl $(ARGS)

test: install browser
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Debian's Chromium, for the test that screenshots the analyst page in a real
# browser. Best effort: without root or apt, that one test is skipped.
browser:
	@command -v chromium >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; \
	} || echo "chromium is not installed: the browser screenshot test will be skipped"

bench: install
	$(BIN)/python bench/run_all.py

# Airflow on this machine without Docker: api-server, scheduler, dag-processor and
# triggerer in one command, with this repo's DAGs and plugin, against the embedded
# Postgres (or DATABASE_URL). The UI is on http://localhost:$(AIRFLOW_PORT)/.
airflow: install
	AIRFLOW_HOME=$(CURDIR)/airflow-home \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:$(AIRFLOW_PORT)/execution/ \
	PATH=$(CURDIR)/$(BIN):$$PATH \
	$(BIN)/airflow standalone

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache airflow-home
