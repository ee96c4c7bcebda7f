# The README's two quickstart commands: `make demo` and `make test`.
# Each makes the virtual environment first if it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := .cache/demo

.PHONY: demo test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[export,test]'
	touch $@

# The main job: export a GPT-2 to ONNX, validate it, and generate from it.
# Until the shipped default model lands, it exports a tiny random-init GPT-2
# (random weights: the text is gibberish, the pipeline is real).
demo: $(BIN)/.installed
	$(BIN)/python -m gpt2onnx.export.random_model $(DEMO)/checkpoint --n-layer 2 --n-head 4 --n-embd 64 > /dev/null
	$(BIN)/gpt2onnx export $(DEMO)/checkpoint $(DEMO)/onnx --force
	$(BIN)/gpt2onnx generate --model $(DEMO)/onnx --max-new-tokens 30 "Once upon a time"

test: $(BIN)/.installed
	$(BIN)/python -m pytest
