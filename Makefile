# Every target builds .venv first (pinned versions from requirements.lock), so a fresh clone
# needs only `make run` or `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
HOST    ?= 127.0.0.1
PORT    ?= 5000

CLUSTER := .venv/.installed-cluster

.PHONY: run test test-fast test-stress test-cluster bench ui clean

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
# then stall. Four workers on two cores: the UI, offline and server tests mostly wait. Measured on
# this machine: 2 workers and torch's threads 401 s; one thread each 480 s (with more tests); 3
# workers and the slow files first (tests/conftest.py) 296 s; with the offline tests, 4 workers 386 s.
TEST_ENV = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TEST_WORKERS = 4
test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not stress"

# fault tests at their worst moment (Ctrl-C/SIGTERM of parallel sweeps, a disk that fills mid-run,
# kill -9 right after the close): they pass alone but failed in a full run on a machine at load 20+
test-stress: $(STAMP)
	$(PY) -m pytest -q tests/test_launcher.py tests/test_faults.py -m stress

# the same without the tests marked slow (browsers, the wheel, long end-to-end runs)
test-fast: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not stress"

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
