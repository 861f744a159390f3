# The two commands: `make quickstart` and `make test`. Both build .venv from nothing.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
export WANDB_MODE ?= offline

.PHONY: install test test-fast quickstart constraints clean

install: $(STAMP)

# torch first, from the CPU build, so no other package can pull the multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The whole suite (what CI runs), and the fast lane: the tests that start no Ray, DeepSpeed or subprocess.
test: $(STAMP)
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

quickstart: $(STAMP)
	$(VENV)/bin/imlsweep sweep run sweeps/quickstart.yaml --report

# Re-pin after a deliberate upgrade: `make constraints`, then run `make test`.
constraints: $(STAMP)
	$(PIP) freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) runs
