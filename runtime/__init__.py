"""gpt2onnx.runtime: run an exported GPT-2 with numpy, onnxruntime and tokenizers only.

    from gpt2onnx.runtime import load
    model = load()  # the shipped default model; load("gpt2-onnx/") for an export
    print(model.generate("Once upon a time", max_new_tokens=20).text)
    for delta in model.stream("Once upon a time", max_new_tokens=20):
        print(delta, end="", flush=True)
    load("sentiment-onnx/").classify(["I loved it"])  # a GPT2ForSequenceClassification export

Layers, each calling only the ones below it: model (load, tokenize, generate,
stream, score, classify) -> run (Run: a search to text deltas; Engine: slots shared by
many searches) -> search (Generator, BeamSearch on a DecodeState) -> kv_cache
-> session (onnxruntime); a classifier's classify -> classifier (ClassifierSession)
-> onnxruntime.
"""

from .classifier import Classification
from .config import GenerationConfig
from .errors import Gpt2OnnxError, ModelLoadError, ProviderError, UsageError
from .beam_search import BeamSearch
from .engine import Engine
from .generator import Generator
from .manifest import ModelInfo
from .model import DEFAULT_MODEL, CompletionStream, Model, load
from .results import SequenceResult, Timing, TokenLogprobs
from .run import Completion, Delta, Run
from .scoring import Score
from .search import Search
from .providers import ProviderFallbackWarning

__all__ = [
    "BeamSearch",
    "Classification",
    "Completion",
    "CompletionStream",
    "DEFAULT_MODEL",
    "Delta",
    "Engine",
    "GenerationConfig",
    "Generator",
    "Gpt2OnnxError",
    "Model",
    "ModelInfo",
    "ModelLoadError",
    "ProviderError",
    "ProviderFallbackWarning",
    "Run",
    "Score",
    "Search",
    "SequenceResult",
    "Timing",
    "TokenLogprobs",
    "UsageError",
    "load",
]
