"""Checking an export against PyTorch: the same prompts through both, logits compared.

Each prompt runs twice through the ONNX graph: once whole (prefill), and once as
a prefill of its first half followed by one-token steps that use the KV cache.
Every position's logits are compared with PyTorch's teacher-forced logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2onnx.runtime import contract
from gpt2onnx.runtime.kv_cache import stepped_logits
from gpt2onnx.runtime.manifest import ModelInfo
from gpt2onnx.runtime.session import DecoderSession

PROMPTS = (
    "Hello, my dog is cute",
    "The quick brown fox jumps over the lazy dog. Then it ran into the forest, where nobody could find it.",
    "long long ago, I was a boy, I love",
)
DEFAULT_ATOL = 1e-3  # float32: max abs logit difference accepted; random-init GPT-2s up to the 124M shape measure < 1e-5
# int8 and float16 round every weight, so their drift scales with the logits: the bound is a
# fraction of the largest |logit| PyTorch gives on PROMPTS. It catches a broken graph (off
# by whole logits); the real drift and how often the top token agrees are in the report.
# int4 measured 25% of the scale on the random 124M checkpoint (its logits span only ~2.8).
RELATIVE_TOLERANCE = {"float16": 0.01, "int8": 0.1, "int4": 0.5}
# An int8 KV cache alone (float32 weights) rounds every cached key and value to 1/100 of its
# channel's calibrated range: 0.15% of the scale measured on the shipped model; bound 5%.
KV_INT8_TOLERANCE = 0.05


def default_atol(weights: str, logit_scale: float, kv_dtype: str = "float32") -> float:
    """The tolerance an export with these weights and KV cache gets when --atol isn't given."""
    if weights == "float32":
        return KV_INT8_TOLERANCE * logit_scale if kv_dtype == "int8" else DEFAULT_ATOL
    return RELATIVE_TOLERANCE[weights] * logit_scale


@dataclass(frozen=True)
class ValidationReport:
    """How far the ONNX logits are from PyTorch's."""

    max_abs_diff: float  # over every prompt, position and vocab entry
    prefill_max_abs_diff: float  # whole prompts in one pass
    cached_max_abs_diff: float  # one-token steps on the KV cache
    positions_checked: int
    atol: float
    logit_scale: float = 0.0  # the largest |logit| PyTorch gives on PROMPTS
    top1_agreement: float = 1.0  # fraction of positions whose most likely token is PyTorch's

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


def torch_logits(checkpoint: Path, prompts: list[list[int]], architecture: str = contract.GPT2_LM) -> list[np.ndarray]:
    """PyTorch's logits [seq, vocab] for each prompt, float32 on the CPU, from transformers' class
    `architecture` (GPT2LMHeadModel or OpenAIGPTLMHeadModel) with its eager attention: the
    reference, which honours every config option (onnx_export.needs_eager_attention)."""
    import torch
    import transformers

    model = getattr(transformers, architecture).from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].numpy() for ids in prompts]


def onnx_logits(session: DecoderSession, ids: list[int], prefill: int) -> np.ndarray:
    """ONNX logits [seq, vocab]: `prefill` tokens in one pass, then one token per cached step."""
    return stepped_logits(session, ids, prefill)


def validate(checkpoint: Path, export_dir: Path, info: ModelInfo, atol: float | None = None) -> ValidationReport:
    """Compare the export in `export_dir` with the PyTorch checkpoint on PROMPTS (atol None: default_atol)."""
    from gpt2onnx.runtime.tokenizer import Tokenizer

    tokenizer = Tokenizer(export_dir / contract.TOKENIZER_FILE)
    prompts = [tokenizer.encode(text)[: info.n_positions] for text in PROMPTS]
    expected = torch_logits(checkpoint, prompts, info.architecture)
    session = DecoderSession(export_dir / contract.MODEL_FILE, info, provider="cpu")
    prefill_diff = cached_diff = 0.0
    agree = 0
    for ids, want in zip(prompts, expected):
        whole = onnx_logits(session, ids, prefill=len(ids))
        prefill_diff = max(prefill_diff, float(np.abs(whole - want).max()))
        agree += int((whole.argmax(axis=-1) == want.argmax(axis=-1)).sum())
        half = max(len(ids) // 2, 1)
        if half < len(ids):
            stepped = onnx_logits(session, ids, prefill=half)
            cached_diff = max(cached_diff, float(np.abs(stepped[half:] - want[half:]).max()))
    scale = max(float(np.abs(want).max()) for want in expected)
    positions = sum(len(ids) for ids in prompts)
    return ValidationReport(
        max_abs_diff=max(prefill_diff, cached_diff),
        prefill_max_abs_diff=prefill_diff,
        cached_max_abs_diff=cached_diff,
        positions_checked=positions,
        atol=default_atol(info.weights, scale, info.kv_dtype) if atol is None else atol,
        logit_scale=scale,
        top1_agreement=agree / positions,
    )
