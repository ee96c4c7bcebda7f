"""gpt2onnx.desktop: the PySide6 text-completion app (arrives with the desktop issue)."""
