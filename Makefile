# The README's two quickstart commands: `make demo` and `make test`.
# Each makes the virtual environment first if it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast default-model screenshot

# The runtime alone: numpy, tokenizers, onnxruntime.
$(BIN)/.installed-runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable .
	touch $@

# Everything the tests need: the runtime, the pinned exporter stack, PySide6, the server, Ray Serve, pytest.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[export,desktop,serve,ray,test]'
	touch $@ $(BIN)/.installed-runtime

# The main job on the shipped default model (a small GPT-2 trained on fortune
# cookies, inside the package): no export, no download, no PyTorch.
demo: $(BIN)/.installed-runtime
	$(BIN)/gpt2onnx generate --max-new-tokens 40 --seed 1 "Once upon a time" "The secret of happiness is"

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# The fast tier: every test not marked slow (the `slow` marker in pyproject.toml): the runtime,
# export, CLI, server, desktop, Ray configs and the benchmarks' smoke runs on the shared small
# exports: about 2 minutes on 2 cores (3 at most). `make test` (and CI) still runs everything.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

# Re-train the shipped default model (about 45 minutes on 2 cores; see training/).
default-model: $(BIN)/.installed
	$(BIN)/python training/train_default_model.py

# The README's picture of the desktop app: the real window on Xvfb (Debian's xvfb
# and the xcb libraries Qt needs are installed if missing).
XCB_LIBS := xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-shape0 \
	libxcb-render-util0 libxcb-image0 libxcb-randr0 libxcb-xkb1 libegl1 libfontconfig1 fonts-dejavu-core
screenshot: $(BIN)/.installed
	command -v xvfb-run > /dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(XCB_LIBS))
	xvfb-run -a -s "-screen 0 1280x800x24" $(BIN)/python -m gpt2onnx.desktop.screenshot docs/desktop.png
