"""The contenders: one class per runtime under test (interface in base.py), and
REGISTRY, the one place that lists them, in table and plot order.

To add one: write benchmarks/contenders/NAME.py with a Contender subclass (name, label, build, imports, load, generate; see base.py),
and add it to REGISTRY below. It then gets built into --work, measured in its
own processes, and shown in the absolute table and the plot; ratios and
targets name their contenders in benchmarks/plan.py and benchmarks/stats.py.
"""

from __future__ import annotations

from .base import Contender, Trace
from .hf import Optimum, Transformers
from .llama_cpp import LlamaCppF16, LlamaCppF32, LlamaCppQ4, LlamaCppQ8, Unavailable
from .ours import Gpt2onnxFp32, Gpt2onnxInt4, Gpt2onnxInt4Kv8, Gpt2onnxInt8, Gpt2onnxInt8Kv8

REGISTRY: dict[str, type[Contender]] = {
    c.name: c
    for c in (Gpt2onnxFp32, Gpt2onnxInt8, Gpt2onnxInt8Kv8, Gpt2onnxInt4, Gpt2onnxInt4Kv8, Optimum, Transformers, LlamaCppF32, LlamaCppF16, LlamaCppQ8, LlamaCppQ4)
}
NATIVE = tuple(name for name, c in REGISTRY.items() if name.startswith("llama.cpp"))  # built from C++ sources: not in --quick
NAMES = tuple(REGISTRY)
OURS = tuple(name for name, c in REGISTRY.items() if c.ours)
LABELS = {name: c.label for name, c in REGISTRY.items()}

__all__ = ["Contender", "LABELS", "NAMES", "NATIVE", "OURS", "REGISTRY", "Trace", "Unavailable"]
