# The README's two quickstart commands: `make demo` and `make test`.
# Each makes the virtual environment first if it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test default-model

# The runtime alone: numpy, tokenizers, onnxruntime.
$(BIN)/.installed-runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable .
	touch $@

# Everything the tests need: the runtime, the pinned exporter stack, pytest.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[export,test]'
	touch $@ $(BIN)/.installed-runtime

# The main job on the shipped default model (a small GPT-2 trained on fortune
# cookies, inside the package): no export, no download, no PyTorch.
demo: $(BIN)/.installed-runtime
	$(BIN)/gpt2onnx generate --max-new-tokens 40 --seed 1 "Once upon a time" "The secret of happiness is"

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# Re-train the shipped default model (about 45 minutes on 2 cores; see training/).
default-model: $(BIN)/.installed
	$(BIN)/python training/train_default_model.py
