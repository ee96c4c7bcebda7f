"""gpt2onnx.export: GPT-2 checkpoint -> validated ONNX export folder.

    from gpt2onnx.export import export_model
    report = export_model("my-gpt2-checkpoint/", "my-gpt2-onnx/")
    print(report.validation["max_abs_diff"], report.total_bytes)

Importing this is cheap: torch, transformers and optimum load when an export runs.
"""

from .pipeline import ExportReport, ValidationFailed, export_model

__all__ = ["ExportReport", "ValidationFailed", "export_model"]
