"""Scoring: teacher-forced log-probabilities and perplexity equal transformers' loss,
long texts follow the sliding-window recipe, and scoring texts together changes nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpt2onnx.runtime import UsageError, load
from gpt2onnx.runtime import kv_cache, scoring
from gpt2onnx.runtime.scoring import score_ids, window_spans

from conftest import torch_model

SHORT_TEXTS = ["Hello, my dog is cute and it likes to play outside.", "The meaning of life is", "a b"]
ATOL = 1e-4  # logprob (nats) and mean NLL; perplexity is compared relatively, with the same tolerance
BATCH_ATOL = 1e-5


def long_text() -> str:
    """About 200 GPT-2 tokens: well past deep_short's 64-token context."""
    return " ".join(f"Sentence {i} says the window slides along the text and counts each token once." for i in range(12))


@pytest.fixture(scope="module")
def short_model(exports):
    """The deep_short export (n_positions 64), loaded once."""
    return load(exports["deep_short"].onnx_dir, provider="cpu")


def torch_loss(checkpoint, ids: list[int]) -> float:
    with torch.no_grad():
        return float(torch_model(checkpoint)(torch.tensor([ids]), labels=torch.tensor([ids])).loss)


def torch_sliding_window(checkpoint, ids: list[int], max_length: int, stride: int) -> tuple[int, float]:
    """(token_count, summed NLL) by Hugging Face's "Perplexity of fixed-length models" recipe in torch.

    The doc weights each window's mean loss by (valid labels - 1); here it is weighted by the
    labels the loss actually averaged (after transformers' shift), so the sum is exact.
    """
    model = torch_model(checkpoint)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        trg_len = end - prev_end
        input_ids = torch.tensor([ids[begin:end]])
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        counted = int((target_ids[:, 1:] != -100).sum())  # the labels the shifted loss averaged over
        nll_sum += float(loss) * counted
        n_tokens += counted
        prev_end = end
        if end == len(ids):
            break
    return n_tokens, nll_sum


def test_short_texts_match_transformers_loss(exported):
    model = load(exported.onnx_dir, provider="cpu")
    scores = model.score(SHORT_TEXTS)
    worst_ppl, worst_logprob = 0.0, 0.0
    for text, s in zip(SHORT_TEXTS, scores):
        ids = model.tokenizer.encode(text)
        loss = torch_loss(exported.checkpoint, ids)
        assert s.text == text and s.token_count == len(ids) - 1
        worst_ppl = max(worst_ppl, abs(s.perplexity - math.exp(loss)) / math.exp(loss))
        worst_logprob = max(worst_logprob, abs(s.logprob + loss * s.token_count))
    print(f"{exported.name}: max relative perplexity diff {worst_ppl:.2e}, max |logprob diff| {worst_logprob:.2e} nats")
    assert worst_ppl < ATOL and worst_logprob < ATOL


@pytest.mark.parametrize("stride", [None, 16, 64, 40])
def test_long_text_matches_torch_sliding_window(exports, short_model, stride):
    ids = short_model.tokenizer.encode(long_text())
    n_positions = short_model.info.n_positions
    assert n_positions == 64 and 150 < len(ids) < 260
    (got,) = short_model.score([long_text()], stride=stride)
    count, nll_sum = torch_sliding_window(exports["deep_short"].checkpoint, ids, n_positions, stride or n_positions // 2)
    diff = abs(-got.logprob / got.token_count - nll_sum / count)
    print(f"stride {stride}: {len(ids)} tokens, {count} counted, |mean NLL diff| {diff:.2e}")
    assert got.token_count == count
    assert diff < ATOL
    assert got.perplexity == pytest.approx(math.exp(nll_sum / count), rel=ATOL)
    if stride != n_positions:  # overlapping windows predict every token but the first once
        assert count == len(ids) - 1


def test_windows_count_each_token_once():
    for n, stride in [(200, 32), (200, 16), (65, 63), (64, 32), (10, 1), (130, 64)]:
        counted = [begin + p for begin, end, first in window_spans(n, 64, stride) for p in range(first, end - begin)]
        if stride < 64:
            assert sorted(counted) == list(range(1, n))
        else:
            assert len(set(counted)) == len(counted)
    assert window_spans(50, 64, 32) == [(0, 50, 1)]  # a text inside the context is one plain window
    # stride == context: windows don't overlap and each window's first token has no prediction
    assert window_spans(130, 64, 64) == [(0, 64, 1), (64, 128, 1), (128, 130, 1)]


def count_forward_calls(model, monkeypatch) -> list[int]:
    """Record the positions of every forward pass (a prefill of either KV cache layout)."""
    calls = []
    for cls in (kv_cache.SharedKVCache, kv_cache.ConcatKVCache):

        def counting(self, row, ids, start=0, last_only=True, _prefill=cls.prefill):
            calls.append(len(ids))
            return _prefill(self, row, ids, start, last_only)

        monkeypatch.setattr(cls, "prefill", counting)
    return calls


def test_texts_scored_together_equal_each_alone(short_model, monkeypatch):
    texts = [long_text(), "Hi there", SHORT_TEXTS[0], "a b", " ".join(["word"] * 63), SHORT_TEXTS[1] * 3]
    alone = [short_model.score([text], stride=24)[0] for text in texts]
    calls = count_forward_calls(short_model, monkeypatch)
    together = short_model.score(texts, stride=24)
    windows = sum(len(window_spans(len(short_model.tokenizer.encode(t)), 64, 24)) for t in texts)
    assert windows > len(texts) and len(calls) == windows  # one call per window: it fits the logits budget
    worst = 0.0
    for a, b in zip(alone, together):
        assert (b.text, b.token_count) == (a.text, a.token_count)
        worst = max(worst, abs(a.logprob - b.logprob), abs(a.perplexity - b.perplexity) / a.perplexity)
    print(f"together vs alone: max diff {worst:.2e}")
    assert worst < BATCH_ATOL


def test_small_logits_budget_splits_windows_into_chunks(short_model, monkeypatch):
    texts = [long_text(), SHORT_TEXTS[0], SHORT_TEXTS[1]]
    want = score_ids(short_model.session, [short_model.tokenizer.encode(t) for t in texts])
    vocab_row = short_model.info.vocab_size * 4  # bytes of one position's float32 logits
    monkeypatch.setattr(scoring, "LOGITS_BUDGET_BYTES", 10 * vocab_row)
    calls = count_forward_calls(short_model, monkeypatch)
    got = score_ids(short_model.session, [short_model.tokenizer.encode(t) for t in texts])
    assert len(calls) > 5 and max(calls) <= 10  # fed in chunks of <= 10 positions
    assert [c for c, _ in got] == [c for c, _ in want]
    assert np.allclose([lp for _, lp in got], [lp for _, lp in want], rtol=0, atol=BATCH_ATOL)


def test_refuses_texts_without_a_prediction_and_bad_strides(short_model):
    assert len(short_model.tokenizer.encode("a")) == 1
    for texts in (["a"], [""], ["fine text here", "a"]):
        with pytest.raises(UsageError, match="at least two tokens"):
            short_model.score(texts)
    with pytest.raises(UsageError, match="at least two tokens"):
        score_ids(short_model.session, [[464]])
    for stride in (0, -1, 65):
        with pytest.raises(UsageError, match="stride"):
            short_model.score(["a long enough text"], stride=stride)
    assert short_model.score(["a long enough text"], stride=64)[0].token_count == 3
    assert short_model.score([]) == []
