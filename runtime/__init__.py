"""gpt2onnx.runtime: run an exported GPT-2 with numpy, onnxruntime and tokenizers only.

    from gpt2onnx.runtime import load
    model = load()  # the shipped default model; load("gpt2-onnx/") for an export
    print(model.generate("Once upon a time", max_new_tokens=20).text)
    for delta in model.stream("Once upon a time", max_new_tokens=20):
        print(delta, end="", flush=True)
"""

from .config import GenerationConfig
from .errors import Gpt2OnnxError, ModelLoadError, ProviderError, UsageError
from .beam_search import BeamSearch
from .generator import Generator, Timing, TokenLogprobs
from .manifest import ModelInfo
from .model import DEFAULT_MODEL, CompletionStream, Model, load
from .run import Completion, SequenceResult
from .scoring import Score
from .providers import ProviderFallbackWarning

__all__ = [
    "BeamSearch",
    "Score",
    "SequenceResult",
    "TokenLogprobs",
    "Completion",
    "DEFAULT_MODEL",
    "CompletionStream",
    "GenerationConfig",
    "Generator",
    "Gpt2OnnxError",
    "Model",
    "ModelInfo",
    "ModelLoadError",
    "ProviderError",
    "ProviderFallbackWarning",
    "Timing",
    "UsageError",
    "load",
]
