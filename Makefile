# Quick start: `make demo` runs the navigator, `make test` runs the test suite.
# Both create .venv first when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Set TORCH_INDEX=https://download.pytorch.org/whl/cpu on machines whose default
# index would otherwise serve a CUDA build of torch.
TORCH_INDEX ?=
PIP_TORCH_FLAGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: setup demo test test-fast bench bench-hierarchy clean

# setuptools prints an information-only notice for every editable install that maps folders into the
# package (plugins/ and sim/ become amiagent.plugins and amiagent.sim): not a problem, so not shown.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIP_TORCH_FLAGS) -c constraints.txt "torch==2.13.0"
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q $(PIP_TORCH_FLAGS) -c constraints.txt -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/amiagent run agent=navigator world=open_field

# in random order (pytest-randomly; the seed is printed, `pytest --randomly-seed=N` repeats an order),
# each test under pytest-timeout's 120 s default unless it is marked longer
test: setup
	$(BIN)/python -m pytest -q

# the edit loop: everything but the whole-episode integration tests marked slow, stopping at the first failure
test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not slow"

bench: setup
	$(BIN)/amiagent bench bus
	$(BIN)/amiagent bench plan
	$(BIN)/amiagent bench loop

# the issue-4 evaluations: 200 seeded episodes per agent and world (about 35 minutes on 2 cores)
bench-hierarchy: setup
	$(BIN)/amiagent bench hierarchy --episodes 200

clean:
	rm -rf $(VENV) runs outputs .pytest_cache .hypothesis
