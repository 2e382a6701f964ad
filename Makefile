# Two commands on a fresh machine: `make demo` and `make test` (the first run creates .venv and installs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
CHROMIUM_STAMP := $(VENV)/.stamp-chromium

.PHONY: demo test test-ray bench sync

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m cjm_workers.demo.app

# the browser tests drive Debian's Chromium
$(CHROMIUM_STAMP): tools/install-chromium | $(STAMP)
	sh tools/install-chromium
	touch $(CHROMIUM_STAMP)

# the behavioural suites again with every worker on a local Ray (on loopback: tests/conftest.py sets Ray's variables)
RAY_SUITES := tests/test_ray.py tests/test_jobs.py tests/test_cancel_ladder.py tests/test_failures.py tests/test_lifecycle.py \
	tests/test_health.py tests/test_async_plugins.py tests/test_prefetch.py tests/test_scheduling.py tests/test_start_errors.py \
	tests/test_seed_compat.py tests/test_durable.py tests/test_hardening.py tests/test_chaos.py tests/test_orphans.py \
	tests/test_worker_start.py

test: $(STAMP) $(CHROMIUM_STAMP)
	$(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest
	$(MAKE) test-ray

test-ray: $(STAMP)
	$(BIN)/python -m pytest --backend ray $(RAY_SUITES)

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/scheduling.py
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/sse.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/remote.py
	$(BIN)/python bench/ray.py

# notebooks -> package; fails if the committed package differs from the notebooks
sync: $(STAMP)
	$(BIN)/nbdev-clean
	$(BIN)/nbdev-export
	@test -z "$$(git status --porcelain -- nbs cjm_workers)" || { git status --porcelain -- nbs cjm_workers; echo "notebooks and package are out of sync: run nbdev-clean && nbdev-export and commit"; exit 1; }
