"""gpt2onnx.desktop: the PySide6 text-completion app.

    gpt2onnx desktop [--model DIR] [--provider auto|cpu|cuda]
    gpt2onnx-desktop                       # the same, as a GUI script

Needs PySide6 (`pip install 'gpt2onnx[desktop]'`). Importing this package is
cheap; Qt loads when the app starts (gpt2onnx.desktop.app.main).
"""
