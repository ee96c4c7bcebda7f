"""Parity with transformers, the oracle: greedy token ids equal, cached logits close."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpt2onnx.runtime import load
from gpt2onnx.runtime.kv_cache import stepped_logits

from conftest import cli_json, hf_greedy, torch_model

PROMPTS = ["Hello, my dog is cute and", "The meaning of life is", "In 1492, Columbus sailed", "a"]
LOGIT_ATOL = 1e-4


@pytest.mark.slow  # a CLI process per shape (~10 s)
def test_cli_greedy_ids_equal_transformers(exported):
    out = cli_json("generate", "--model", str(exported.onnx_dir), "--max-new-tokens", "24", "--json", *PROMPTS)
    model = load(exported.onnx_dir, provider="cpu")
    assert [r["prompt"] for r in out["results"]] == PROMPTS
    for prompt, result in zip(PROMPTS, out["results"]):
        ids = model.tokenizer.encode(prompt)
        (sequence,) = result["sequences"]
        assert sequence["token_ids"] == hf_greedy(exported.checkpoint, ids, 24)
        assert sequence["text"] == model.tokenizer.decode(sequence["token_ids"])


def cached_logits(onnx_dir, ids: list[int], prefill: int) -> np.ndarray:
    """Logits [seq, vocab]: `prefill` tokens in one pass, then one cached step per token."""
    return stepped_logits(load(onnx_dir, provider="cpu").session, ids, prefill)


def test_cached_step_logits_match_pytorch_teacher_forced(exported):
    model = load(exported.onnx_dir, provider="cpu")
    prompt = model.tokenizer.encode("The cache must give the same logits as a full forward pass, step after step.")
    ids = prompt + hf_greedy(exported.checkpoint, prompt, 30)  # teacher-forced on transformers' own tokens
    ids = ids[: model.info.n_positions]
    with torch.no_grad():
        want = torch_model(exported.checkpoint)(torch.tensor([ids])).logits[0].numpy()
    got = cached_logits(exported.onnx_dir, ids, prefill=4)
    diff = float(np.abs(got - want).max())
    print(f"{exported.name}: max |logit diff| over {len(ids)} positions = {diff:.2e}")
    assert diff < LOGIT_ATOL


@pytest.mark.slow  # exports and runs the real 124M shape (~50 s)
def test_gpt2_small_shape_greedy_and_logits(gpt2_small):
    model = load(gpt2_small.onnx_dir, provider="cpu")
    for prompt in PROMPTS[:2]:
        ids = model.tokenizer.encode(prompt)
        completion = model.generate(prompt, max_new_tokens=32)
        assert completion.token_ids == hf_greedy(gpt2_small.checkpoint, ids, 32)
    ids = model.tokenizer.encode(PROMPTS[0]) + completion.token_ids
    with torch.no_grad():
        want = torch_model(gpt2_small.checkpoint)(torch.tensor([ids])).logits[0].numpy()
    diff = float(np.abs(cached_logits(gpt2_small.onnx_dir, ids, prefill=3) - want).max())
    print(f"gpt2 124M shape: max |logit diff| = {diff:.2e}, export {gpt2_small.report.total_bytes / 1e6:.0f} MB")
    assert diff < LOGIT_ATOL
