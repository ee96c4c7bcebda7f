"""Rows feed k >= 1 tokens and get logits for each, and rewind (runtime/kv_cache.py, slots.py):
what speculative decoding needs. On both graphs (the GroupQueryAttention one, "tiny", and
Optimum's, "deep_short"): rows of different lengths feeding different numbers of tokens in
one pass give the logits one-token-at-a-time feeding gives, within 1e-4; rows given in any
order, also not contiguous; rewind then re-feed equals never having fed.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpt2onnx.runtime import load
from gpt2onnx.runtime.kv_cache import new_cache

ATOL = 1e-4
PROMPTS = [[464, 2068, 7586, 21831, 18045], [15496, 11, 616, 3290, 318, 13779, 290, 257, 1310], [40, 1101]]


@pytest.fixture(scope="module", params=["tiny", "deep_short"])
def session(request, exports):
    return load(exports[request.param].onnx_dir, provider="cpu").session


def prefilled(session, slots: int = 4):
    cache = new_cache(session, slots, 48)
    for row, ids in enumerate(PROMPTS):
        cache.prefill(row, ids)
    return cache


def one_at_a_time(session, row: int, ids: list[int]) -> np.ndarray:
    """The reference: a fresh cache fed the row's new tokens one decode step at a time: [k, vocab]."""
    cache = prefilled(session)
    return np.stack([cache.decode(np.array([row]), np.array([t])).copy()[0] for t in ids])


@pytest.mark.parametrize("rows,feeds", [
    ([0, 1, 2], [[11, 12, 13], [14], [15, 16, 17, 18]]),  # three lengths, three feed sizes, one contiguous run
    ([2, 0], [[21, 22], [23, 24, 25, 26, 27]]),  # any order, and a gap (row 1 is not fed)
    ([1], [[31, 32, 33, 34, 35, 36, 37, 38]]),  # one row, a draft of eight
])
def test_a_k_token_feed_equals_one_token_at_a_time(session, rows, feeds):
    cache = prefilled(session)
    got = cache.feed(np.array(rows), feeds)
    for row, ids, logits in zip(rows, feeds, got):
        assert logits.shape == (len(ids), session.info.vocab_size)
        np.testing.assert_allclose(logits, one_at_a_time(session, row, ids), atol=ATOL, err_msg=f"row {row}")
        assert cache.lengths[row] == len(PROMPTS[row]) + len(ids) and cache.held[row] == PROMPTS[row] + ids
    # The rows fed go on decoding from where their real tokens end (padding is not counted).
    after = cache.decode(np.array(rows), np.array([99] * len(rows)))
    for i, row in enumerate(rows):
        np.testing.assert_allclose(after[i], one_at_a_time(session, row, feeds[i] + [99])[-1], atol=ATOL)


def test_rewind_then_refeed_equals_never_having_fed(session):
    cache = prefilled(session)
    cache.feed(np.array([0, 1]), [[11, 12, 13, 14], [15, 16]])  # a draft: row 0's last 3 are rejected
    cache.rewind(0, 3)
    assert cache.lengths[0] == len(PROMPTS[0]) + 1 and cache.held[0] == PROMPTS[0] + [11]
    got = cache.feed(np.array([0]), [[41, 42]])[0]
    np.testing.assert_allclose(got, one_at_a_time(session, 0, [11, 41, 42])[1:], atol=ATOL)
    np.testing.assert_allclose(cache.decode(np.array([0]), np.array([43]))[0], one_at_a_time(session, 0, [11, 41, 42, 43])[-1], atol=ATOL)
    cache.rewind(1, 2)  # back to the prompt alone
    np.testing.assert_allclose(cache.decode(np.array([1]), np.array([7]))[0], one_at_a_time(session, 1, [7])[0], atol=ATOL)
    with pytest.raises(RuntimeError, match="can't rewind"):
        cache.rewind(2, 10)


def test_a_chunk_carried_with_decode_rows_gives_the_logits_of_separate_passes(exports):
    """KVCache.ride: the decode rows' token and a prompt chunk on another row run in one pass (the
    graph's packed_chunk part); their logits, and every logit after, equal a decode pass and a
    prefill run apart, within 1e-4. A chunk that would fill its row is run apart (the graph's
    attention pads the chunk with one position), as are rows not in one contiguous run."""
    session = load(exports["tiny"].onnx_dir, provider="cpu").session
    assert session.info.packed_chunk
    long = list(range(100, 160))
    for rows, chunk_row, start, chunk, capacity, carried in (
        ([0, 1, 2], 3, 0, long[:17], 48, True),  # a fresh prompt's first chunk
        ([1, 0], 3, 17, long[17:40], 48, True),  # a later chunk after its row's past, rows in any order
        ([0, 1, 2], 3, 17, long[17:48], 48, False),  # the chunk would fill the row: it runs apart
        ([0, 2], 3, 0, long[:9], 48, False),  # not one run of rows
    ):
        caches = []
        for ride in (True, False):
            cache = new_cache(session, 4, capacity)
            for row, ids in enumerate(PROMPTS):
                cache.prefill(row, ids)
            if start:
                cache.prefill(chunk_row, long[:start])
            tokens = np.array([7, 8, 9][: len(rows)])
            runs = session.runs
            if ride:
                assert cache.ride(np.array(rows), tokens) == (rows != [0, 2])
                last = cache.prefill(chunk_row, chunk, start)
                decoded = cache.unride()
                assert (decoded is not None) == carried and session.runs == runs + 1  # carried: the decode rows ran in the chunk's pass
                if decoded is None:
                    decoded = cache.decode(np.array(rows), tokens)
            else:
                decoded = cache.decode(np.array(rows), tokens).copy()
                last = cache.prefill(chunk_row, chunk, start)
            caches.append((cache, decoded.copy(), last.copy()))
        (a, decoded_a, last_a), (b, decoded_b, last_b) = caches
        np.testing.assert_allclose(decoded_a, decoded_b, atol=ATOL)
        np.testing.assert_allclose(last_a, last_b, atol=ATOL)
        assert a.lengths.tolist() == b.lengths.tolist() and a.held == b.held
        every = np.arange(4)[a.lengths < capacity]  # then everyone decodes on: the keys and values were written alike
        np.testing.assert_allclose(a.decode(every, every + 3), b.decode(every, every + 3), atol=ATOL)
