# The two commands of the README: `make demo` and `make test`. Each creates the virtual
# environment on first use (about 3 minutes: PyTorch, open_clip, ONNX Runtime, MediaPipe).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clipmg-installed

.PHONY: env demo test bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[live,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) run_live.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
