# Every target builds .venv first (pinned versions from requirements.lock), so a fresh clone
# needs only `make run` or `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
HOST    ?= 127.0.0.1
PORT    ?= 5000

CLUSTER := .venv/.installed-cluster

.PHONY: run test test-slow test-all test-cluster bench ui clean

$(STAMP): pyproject.toml requirements.lock
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first and pinned: 2.13.0 is a CPU wheel on this machine's disk; an unpinned torch
	# would pull a CUDA build of several GB.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.lock
	# The Optuna sweeper without its optuna<3 pin: optuna 2.10 cannot open a database study under
	# SQLAlchemy 2.1 (which mlflow 3.17 needs); every optuna API the plugin calls is still in 4.9.
	$(PIP) install -q --no-deps hydra-optuna-sweeper==1.3.0
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m runner

# Each test's processes (the CLI, its tracking process, a sweep's workers) on one thread: torch's
# default of a thread per core oversubscribes the cores several times over, and OpenMP's barriers
# then stall. Four workers on two cores: the server and browser tests mostly wait.
TEST_ENV = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TEST_WORKERS = 4
PYTEST = $(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS)

# The suite in two tiers, both run by CI (.ci/run). `make test`: every unit, property and
# reference test and the CLI end to end, in-process and in subprocesses (~150 s on 2 cores).
# `make test-slow`: what needs many processes or minutes: sweeps through every launcher, faults
# and signals at their moment, many processes on one store, a real mlflow server stopped and
# restarted, the UI in Chromium, the wheel in a fresh venv, the notebook (~6 min).
test: $(STAMP)
	$(PYTEST) --dist load -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) --dist loadfile -m slow

test-all: test test-slow

$(CLUSTER): $(STAMP)
	$(PIP) install -q -e '.[cluster]'
	touch $(CLUSTER)

# Root, with Debian's slurm-wlm, munge and postgresql (.ci/run installs them): a one-node SLURM,
# PostgreSQL and an mlflow server on this machine (scripts/local_cluster.sh), sweeps through
# sbatch, the faults a cluster brings; every daemon is stopped at the end. About 5 minutes.
test-cluster: $(CLUSTER)
	$(PY) -m pytest -q -s tests/cluster

bench: $(STAMP)
	$(PY) benchmarks/bench.py

# Notes HOST:PORT beside mlflow.db (.mlflow-ui-url: the links a run prints read it), prints a link
# to each experiment's runs (MLflow 3.17 opens a clicked experiment on its GenAI overview unless
# the URL says workflowType=machine_learning), then runs `mlflow ui`. `make ui PORT=5001` too.
ui: $(STAMP)
	$(PY) -m runner.tracking.links --host $(HOST) --port $(PORT) --store $(CURDIR)/mlflow.db

clean:
	rm -rf .venv outputs multirun .pytest_cache
