# `make run` and `make test` set everything up on a fresh machine (a venv in .venv, installed once).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install.stamp

.PHONY: install run test test-fast tasks layers bench bench-smoke clean search-workers

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv installs the same packages several times faster than pip (parallel downloads and unpacking: torch's wheels
	@# are gigabytes), from the indexes, find-links and constraints pip is configured with (`pip config list`,
	@# translated by PIP_TO_UV below), choosing among all of them as pip does. Where uv cannot be had or fails,
	@# pip installs.
	$(BIN)/python -m pip install -q uv && $(BIN)/python -c "$$PIP_TO_UV" > $(VENV)/uv-args && \
	  $(BIN)/python -m uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match \
	    $$(cat $(VENV)/uv-args) -e '.[dev,cluster,tracking]' || \
	  { $(BIN)/python -m pip install -q --upgrade pip && \
	    $(BIN)/python -m pip install -q --no-compile -e '.[dev,cluster,tracking]'; }
	@# Neither installer byte-compiles here; compileall does it on every core. Imports read the compiled files (also
	@# where PYTHONDONTWRITEBYTECODE keeps Python from writing them). The packages' test suites are left out
	@# (never imported here), as is a file that does not compile (test data of some packages).
	-$(BIN)/python -m compileall -qq -j 0 -x '/tests/' \
	  $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
	touch $(STAMP)

# pip's configuration (its files and PIP_* variables, merged by `pip config list`) as uv's options: for each key the
# value pip's install command would use (a PIP_* variable over an [install] section over a [global] one).
define PIP_TO_UV
import shlex, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
rank = {"global": 0, "install": 1, ":env:": 2}
flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
         "constraint": "--constraint"}
best = {}
for line in listed.splitlines():
    key, _, value = line.partition("=")
    scope, _, name = key.rpartition(".")
    if name in flags and scope in rank and rank[scope] >= best.get(name, (-1, ""))[0]:
        best[name] = (rank[scope], " ".join(shlex.split(value)))
args = [f"{flags[name]}={v}" for name, (_, value) in best.items() for v in value.split()]
print(shlex.join(args))
endef
export PIP_TO_UV

# The default experiment on the embedded synthetic data.
run: install
	$(BIN)/python -m src.main

# The whole suite, slow end-to-end cases included, then the benchmarks' smoke mode (CI runs this). Two workers:
# part of the suite's time is spent waiting (SLURM's scheduler, service start-up, single-threaded tiny jobs).
# A worker that runs a case needing a session service (the SLURM cluster, the PostgreSQL server) starts its own:
# spreading those cases over both workers is faster than keeping them on one. `--dist loadgroup` (no groups are
# marked) hands out the cases one at a time in the conftest's longest-first order; the default `load` first sends
# each worker a consecutive chunk of the collection, so the longest cases, listed first, all land on one worker.
# The smoke benchmarks run after the tests, not beside them: beside, both slow down by more than the idle time
# they would fill. Fails if either fails.
test: install
	@$(BIN)/python -m pytest -q -n 2 --dist loadgroup; tests=$$?; \
	$(MAKE) --no-print-directory bench-smoke; bench=$$?; \
	echo "pytest exit $$tests, bench-smoke exit $$bench"; [ $$tests -eq 0 ] && [ $$bench -eq 0 ]

# Every benchmark figure at full size (writes benchmarks/results/*.json and benchmarks/README.md).
bench: install
	$(BIN)/python -m benchmarks.run_all

# Every benchmark at tiny sizes: checks they run (numbers mean little), two figures at a time (most keep one core busy),
# their CLI runs forked from a process that has done the imports once (benchmarks/common.py, fork_cli_runs).
bench-smoke: install
	$(BIN)/python -m benchmarks.run_all --smoke --jobs 2

# Without the slow end-to-end cases.
test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow"

clean:
	rm -rf outputs .cache .pytest_cache lightning_logs
	find multirun -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	@# The venv's compiled files stay: without them every process compiles what it imports.
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# The table of target tasks (group, distance from the source, metric).
tasks: install
	$(BIN)/python -m src.data

# Every arch's depths and the layer names layer= accepts.
layers: install
	$(BIN)/python -m src.models

# N Optuna search workers on one shared study (README, "Cluster"): make search-workers N=4 ARGS="search=factors_tpe hydra.sweeper.storage=postgresql://user@host/db"
N ?= 2
search-workers: install
	$(BIN)/python -m src.search.workers $(N) $(ARGS)
