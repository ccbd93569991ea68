PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export QT_QPA_PLATFORM ?= offscreen

.PHONY: demo test bench install train-deps train clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (Python 3.11) on PATH, or run: make PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/station demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/station bench pipeline --items 100

train-deps: install
	$(BIN)/python -m pip install -e '.[train]'

# Reproduces the shipped model (models/weights/defects.onnx and its model card).
train: train-deps
	$(BIN)/station train models/configs/detector.toml --out models/weights/defects.onnx

clean:
	rm -rf build .pytest_cache
