"""gpt2onnx.export: GPT-2 checkpoint -> validated ONNX export folder."""
