# The two commands of the README: `make demo` and `make test`. Each creates the virtual
# environment on first use (about 3 minutes: PyTorch, open_clip, ONNX Runtime, MediaPipe).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clipmg-installed

.PHONY: env demo test lint bench clean runtime-env runtime-test

RUNTIME_VENV ?= .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.clipmg-installed
RUNTIME_REQS := -e '.[runtime]' 'pytest>=8' 'pytest-timeout>=2.3' 'jsonschema>=4.20'

# pip install, tried once more without pip's cache when it fails: a wheel can arrive corrupted (a CI
# run on 2026-12-03 stopped on jaxlib's hash mismatch, and the same install passed a minute later).
# $(call pip_install,PYTHON,REQUIREMENTS)
pip_install = $(1) $(PIP) $(2) || (echo "pip install failed; trying once more without the download cache" >&2 \
	&& sleep 5 && $(1) $(PIP) --no-cache-dir $(2))
PIP := -m pip install -q --disable-pip-version-check
LIVE_REQS := -e '.[live,test]'

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call pip_install,$(PY),$(LIVE_REQS))
	touch $(STAMP)

demo: $(STAMP)
	$(PY) run_live.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

# ruff (lint and a format check) and mypy on the product folders; the rules are in pyproject.toml.
LINTED := model engines stream train bench run_live.py tests
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy model engines stream train bench

# The live runtime alone (no PyTorch): what a deployment installs; CI runs the live tests in it.
$(RUNTIME_STAMP): pyproject.toml
	test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	$(call pip_install,$(RUNTIME_VENV)/bin/python,$(RUNTIME_REQS))
	touch $(RUNTIME_STAMP)

runtime-env: $(RUNTIME_STAMP)

runtime-test: $(RUNTIME_STAMP)
	CLIPMG_RUNTIME_ENV=1 $(RUNTIME_VENV)/bin/python -m pytest -p no:cacheprovider tests/test_runtime.py tests/test_real_clips.py $(ARGS)

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) build *.egg-info
