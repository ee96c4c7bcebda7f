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
from gpt2onnx.runtime.generator import run_step
from gpt2onnx.runtime.kv_cache import KVCache
from gpt2onnx.runtime.manifest import ModelInfo
from gpt2onnx.runtime.session import DecoderSession

PROMPTS = (
    "Hello, my dog is cute",
    "The quick brown fox jumps over the lazy dog. Then it ran into the forest, where nobody could find it.",
    "long long ago, I was a boy, I love",
)
DEFAULT_ATOL = 1e-3  # max abs logit difference accepted; random-init GPT-2s up to the 124M shape measure < 1e-5


@dataclass(frozen=True)
class ValidationReport:
    """How far the ONNX logits are from PyTorch's."""

    max_abs_diff: float  # over every prompt, position and vocab entry
    prefill_max_abs_diff: float  # whole prompts in one pass
    cached_max_abs_diff: float  # one-token steps on the KV cache
    positions_checked: int
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


def torch_logits(checkpoint: Path, prompts: list[list[int]]) -> list[np.ndarray]:
    """PyTorch's logits [seq, vocab] for each prompt, float32 on the CPU."""
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].numpy() for ids in prompts]


def onnx_logits(session: DecoderSession, ids: list[int], prefill: int) -> np.ndarray:
    """ONNX logits [seq, vocab]: `prefill` tokens in one pass, then one token per cached step."""
    cache = KVCache(session.empty_past(1))
    chunks = [ids[:prefill]] + [[token] for token in ids[prefill:]]
    rows = [run_step(session, cache, np.array([chunk], np.int64), np.ones((1, len(chunk)), np.int64))[0] for chunk in chunks]
    return np.concatenate(rows, axis=0)  # [seq, vocab]


def validate(checkpoint: Path, export_dir: Path, info: ModelInfo, atol: float = DEFAULT_ATOL) -> ValidationReport:
    """Compare the export in `export_dir` with the PyTorch checkpoint on PROMPTS."""
    from gpt2onnx.runtime.tokenizer import Tokenizer

    tokenizer = Tokenizer(export_dir / contract.TOKENIZER_FILE)
    prompts = [tokenizer.encode(text)[: info.n_positions] for text in PROMPTS]
    expected = torch_logits(checkpoint, prompts)
    session = DecoderSession(export_dir / contract.MODEL_FILE, info, provider="cpu")
    prefill_diff = cached_diff = 0.0
    for ids, want in zip(prompts, expected):
        whole = onnx_logits(session, ids, prefill=len(ids))
        prefill_diff = max(prefill_diff, float(np.abs(whole - want).max()))
        half = max(len(ids) // 2, 1)
        if half < len(ids):
            stepped = onnx_logits(session, ids, prefill=half)
            cached_diff = max(cached_diff, float(np.abs(stepped[half:] - want[half:]).max()))
    return ValidationReport(
        max_abs_diff=max(prefill_diff, cached_diff),
        prefill_max_abs_diff=prefill_diff,
        cached_max_abs_diff=cached_diff,
        positions_checked=sum(len(ids) for ids in prompts),
        atol=atol,
    )
