"""Regression tests for three defects of the step API and the KV cache, each of which
these tests catch on the code before the decoding engine (commit 709d38b):

- a cancelled beam search returned junk: an empty sequence, score -1e9, finish_reason
  "length", never "cancelled";
- a search made most of its state in append_tokens, so calling it before append_tokens
  raised AttributeError (BeamSearch.hypotheses, Generator.finish_row) instead of saying
  what to do;
- the KV cache's own invariants (room for the tokens it is asked to run) raised
  UsageError, which tells the user the input was theirs to fix (exit code 2); running
  out of cache room is a bug of the caller that sized it: RuntimeError (exit code 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpt2onnx.runtime import BeamSearch, Generator, UsageError
from gpt2onnx.runtime.kv_cache import new_cache

PROMPT = "In 1492, Columbus sailed"
BIG = 1e9  # HF's "-1e9": the score of a hypothesis that does not exist


# ---------------------------------------------------------------------------
# Defect 2: a cancelled beam search returned junk
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [dict(), dict(do_sample=True, seed=1)], ids=["beam search", "beam sampling"])
@pytest.mark.parametrize("name", ["tiny", "deep_short"])  # both KV cache layouts
def test_cancelled_beam_search_returns_its_best_beams_so_far(models, name, settings):
    model, steps = models[name], 5
    search = model.generator(num_beams=4, num_return_sequences=3, max_new_tokens=30, logprobs=1, **settings)
    search.append_tokens(model.tokenizer.encode(PROMPT))
    for _ in range(steps):
        search.generate_next_token()
    assert not search.is_done()  # 30 tokens were allowed: this is a cancel mid-search
    search.cancel()
    assert search.is_done()

    (sequences,) = search.results()
    assert len(sequences) == 3
    for sequence in sequences:
        # Before: [] / -1e9 / "length" (the finished hypotheses, of which there were none).
        assert sequence.finish_reason == "cancelled"
        assert 0 < len(sequence.token_ids) <= steps  # a running beam has `steps` tokens, a finished one fewer
        assert np.isfinite(sequence.score) and sequence.score > -BIG / 2
        # A real beam's score: its tokens' log-probabilities over its length (length_penalty 1,
        # no processors; top_k=50 when sampling leaves the kept log-probabilities as they are).
        assert [entry.token_id for entry in sequence.logprobs] == sequence.token_ids
        logprob = sum(entry.logprob for entry in sequence.logprobs)
        assert sequence.score == pytest.approx(logprob / len(sequence.token_ids), abs=1e-4)
    assert [s.score for s in sequences] == sorted((s.score for s in sequences), reverse=True)  # best first
    assert len({tuple(s.token_ids) for s in sequences}) == 3  # three different beams
    # Running beams made a token at every step; without an eos in 5 steps all are still running.
    assert all(len(s.token_ids) == steps for s in sequences if model.generation_config.eos_token_ids[0] not in s.token_ids)
    # The cancelled search gave its KV cache rows back.
    assert search.state.cache.busy == 0


# ---------------------------------------------------------------------------
# Defect 4: state created in append_tokens, AttributeError before it
# ---------------------------------------------------------------------------

SEARCHES = {
    "greedy": dict(),
    "sampling": dict(do_sample=True, num_return_sequences=2),
    "beam search": dict(num_beams=3, num_return_sequences=2),
    "beam sampling": dict(num_beams=3, do_sample=True),
}


def made_after_init(obj, run) -> list[str]:
    """The attributes of `obj` that `run()` adds to it: none, if __init__ set up everything."""
    before = set(vars(obj))
    run()
    return sorted(set(vars(obj)) - before)


@pytest.mark.parametrize("settings", SEARCHES.values(), ids=SEARCHES.keys())
def test_every_attribute_exists_after_init(models, settings):
    # What a search holds is set up in __init__ (empty until the prompts come), so no call
    # can meet a missing attribute: whatever append_tokens, the steps, cancel and results
    # leave on the search was already there before them. Before: BeamSearch made
    # _max_length, _running, _finished_lengths ... in append_tokens, Generator _ended_at.
    model = models["tiny"]
    search = model.generator(max_new_tokens=6, **settings)
    assert isinstance(search, BeamSearch if settings.get("num_beams", 1) > 1 else Generator)

    def use():
        search.append_tokens(model.tokenizer.encode(PROMPT))
        search.generate_next_token()
        search.cancel()

    assert made_after_init(search, use) == []
    assert made_after_init(search, search.results) == []


@pytest.mark.parametrize("settings", SEARCHES.values(), ids=SEARCHES.keys())
def test_every_decode_state_attribute_exists_after_init(models, settings):
    # The same for the decode state the search keeps its rows, tokens and logits in.
    model = models["tiny"]
    search = model.generator(max_new_tokens=6, **settings)
    state = search.state

    def use():
        search.append_tokens(model.tokenizer.encode(PROMPT))
        while not search.is_done():
            search.generate_next_token()
        search.results()

    assert made_after_init(state, use) == []
    assert search.state is state


@pytest.mark.parametrize("settings", SEARCHES.values(), ids=SEARCHES.keys())
def test_calls_before_append_tokens_say_what_to_do(models, settings):
    model = models["tiny"]
    search = model.generator(max_new_tokens=6, **settings)
    assert not search.is_done()  # not started is not done
    # Before: AttributeError (e.g. BeamSearch.hypotheses(0): no _finished_lengths yet).
    for call in (search.results, search.generate_next_token, search.advance):
        with pytest.raises(RuntimeError, match="call append_tokens first") as raised:
            call()
        assert not isinstance(raised.value, AttributeError)
    # cancel() before append_tokens only marks the search done (an engine drops it from its
    # queue): there is nothing to return yet, and nothing to run.
    search.cancel()
    assert search.is_done()
    with pytest.raises(RuntimeError, match="call append_tokens first"):
        search.results()
    with pytest.raises(RuntimeError, match="call append_tokens first"):
        search.generate_next_token()
    # ... and a cancelled search can't start later and hold slots for nothing.
    with pytest.raises(RuntimeError, match="cancelled before it started"):
        search.append_tokens(model.tokenizer.encode("Too late"))
    assert search.state.slots == []


# ---------------------------------------------------------------------------
# Defect 6: the KV cache's invariants raised UsageError
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "deep_short"])  # SharedKVCache (GroupQueryAttention), ConcatKVCache (Optimum)
def test_kv_cache_overflow_is_a_bug_not_a_usage_error(models, name):
    session = models[name].session
    cache = new_cache(session, 1, 4)
    assert cache.capacity == 4
    ids = [464, 2068, 7586, 21831, 18045]  # five ids, one more than the row holds

    # Before: UsageError ("the KV cache holds 4 tokens per row: this step needs more").
    with pytest.raises(RuntimeError) as raised:
        cache.prefill(0, ids)
    assert not isinstance(raised.value, UsageError)
    assert cache.lengths[0] == 0  # refused before running: the row holds nothing

    cache.prefill(0, ids[:4])  # a full row
    assert cache.lengths[0] == 4
    with pytest.raises(RuntimeError) as raised:
        cache.decode(np.zeros(1, np.int64), np.array([ids[4]], np.int64))
    assert not isinstance(raised.value, UsageError)
    assert cache.lengths[0] == 4 and cache.held[0] == ids[:4]  # the row is as it was
    # A prefill after the row's end (a gap) is the same kind of bug.
    with pytest.raises(RuntimeError) as raised:
        cache.prefill(0, ids[:1], start=5)
    assert not isinstance(raised.value, UsageError)
