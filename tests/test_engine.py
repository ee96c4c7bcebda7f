"""The slot engine (runtime/engine.py): continuous batching of many searches on one KV cache.

Requests join and leave an engine at different steps, are cancelled or wait for a free
slot, and each must still get exactly the tokens it gets alone (and, for greedy search,
transformers' tokens): with its own settings and its own random stream, on both KV
layouts (the "shared" GroupQueryAttention buffers and Optimum's "concat" graph). On the
shared layout the buffers are written in place, one position per busy row per step.
A slot keeps its keys and values after its request ends, so a prompt that starts the same
way (a regenerate, a continuation) reuses them and still gives the same tokens. Requests
that can never fit, and engines of no slots, are refused.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from gpt2onnx.runtime import UsageError
from gpt2onnx.runtime.kv_cache import SharedKVCache

from conftest import hf_greedy


# The fixture models are random: their next-token distributions are nearly flat and plain greedy
# search tends to repeat one token, which a wrong row's keys and values might not change. So the
# greedy requests here mostly ban repeats (no_repeat_ngram_size=1: the best unseen token, a ranking
# of near ties that any wrong key or value reorders), and every request also records each token's
# log-probability, compared with its alone run: that value depends on every position the row holds.
NO_REPEAT = dict(no_repeat_ngram_size=1)
LOGPROB_ATOL = 1e-4  # a batch may round differently from a run alone; wrong keys/values move these far more


def assert_same_sequences(got, want, name: str = "") -> None:
    """Two runs' sequences (SequenceResult lists) made the same tokens, for the same reasons, with the
    same log-probabilities and top alternatives (and beam scores)."""
    assert [s.token_ids for s in got] == [s.token_ids for s in want], name
    assert [s.finish_reason for s in got] == [s.finish_reason for s in want], name
    for g, w in zip(got, want):
        assert_same_logprobs(g.logprobs, w.logprobs, name)
        if w.score is not None:
            assert g.score == pytest.approx(w.score, rel=1e-4, abs=1e-5), name


def assert_same_logprobs(got, want, name: str = "") -> None:
    assert (got is None) == (want is None) and len(got or ()) == len(want or ()), name
    for g, w in zip(got or (), want or ()):
        assert g.token_id == w.token_id and [t for t, _ in g.top] == [t for t, _ in w.top], name
        np.testing.assert_allclose([g.logprob, *(v for _, v in g.top)], [w.logprob, *(v for _, v in w.top)], atol=LOGPROB_ATOL, err_msg=name)


def check_rows(engine) -> None:
    """The engine's bookkeeping: the cache lends exactly the rows the active searches hold, and
    they are rows 0 .. busy - 1 (the engine keeps busy rows first, so one step is one batch)."""
    held = [slot.row for search in engine.active for slot in search.state.slots if slot is not None]
    assert sorted(held) == list(range(engine.cache.busy))


def drain(engine) -> None:
    while engine.has_work():
        engine.step()
        check_rows(engine)


def alone_ids(model, ids: list[int], seed: int | None = None, **settings):
    """The sequences (SequenceResult list) a request makes when it runs by itself, in a cache of its
    own (the step API without an engine: for prompts given as ids rather than text)."""
    search = model.generator(seed=seed, **settings)
    search.append_tokens([ids])
    while not search.is_done():
        search.generate_next_token()
    return search.results()[0]


def test_staggered_joins_leaves_cancel_and_queue_give_each_request_its_alone_tokens(exported, models):
    model = models[exported.name]
    # (prompt, max_new_tokens, greedy settings): budgets differ so requests leave at different steps;
    # every prompt plus its budget fits deep_short's 64 positions.
    requests = {
        "a": ("The quick brown fox", 12, NO_REPEAT),
        "b": ("Hello, my dog is cute and", 4, {}),
        "c": ("Cancel me after a few tokens", 30, NO_REPEAT),  # cancelled mid-way
        "d": ("In 1492, Columbus sailed", 9, dict(repetition_penalty=1.3)),
        "e": ("a", 7, NO_REPEAT),  # submitted while every slot is busy: waits in the queue
        "f": ("The meaning of life is", 15, NO_REPEAT),  # submitted after the cancel
    }
    ids = {name: model.tokenizer.encode(text) for name, (text, _, _) in requests.items()}
    searches = {name: model.generator(max_new_tokens=n, do_sample=False, logprobs=2, **kw) for name, (_, n, kw) in requests.items()}
    engine = model.engine(slots=4)
    assert engine.cache.slots == 4 and engine.cache.free_slots == 4

    def submit(*names):
        for name in names:
            engine.submit(searches[name], [ids[name]])

    def step():
        stepped = engine.step()
        check_rows(engine)
        return stepped

    submit("a", "b", "c")
    assert set(step()) == {searches[n] for n in "abc"}  # admitted and first tokens chosen in one step
    assert not engine.waiting and engine.cache.busy == 3
    step(), step()  # a, b, c: 3 tokens each

    # d takes the last free slot; e must wait. b makes its 4th and last token in this step and
    # leaves, so its slot is free by the end of the step, but admission happened before.
    submit("d", "e")
    stepped = step()
    assert searches["e"] not in stepped and [s for s, _ in engine.waiting] == [searches["e"]]
    assert not searches["e"].state.started  # never prefilled while it waited
    assert searches["b"].is_done() and searches["b"] in stepped and searches["b"] not in engine.active
    assert searches["b"].state.slots == [None] and engine.cache.busy == 3

    step()  # e joins in b's old slot
    assert not engine.waiting and searches["e"] in engine.active and engine.cache.busy == 4

    # c has made 5 tokens. Cancel it from another thread (cancel is the thread-safe call, e.g. a stop
    # button); it takes effect at the next step, which frees its slot at once. Nothing ends in that
    # step (a: 6 of 12, d: 3 of 9, e: 2 of 7), so busy drops by exactly c's row.
    assert searches["c"].timing.new_tokens == 5
    canceller = threading.Thread(target=engine.cancel, args=(searches["c"],))
    canceller.start()
    canceller.join()
    assert not searches["c"].is_done()  # not before the engine's next step
    stepped = step()
    assert searches["c"].is_done() and searches["c"] not in stepped and searches["c"] not in engine.active
    assert searches["c"].state.slots == [None] and engine.cache.busy == 3

    submit("f")  # fits in c's freed slot at once
    step()
    assert searches["f"] in engine.active and engine.cache.busy == 4
    drain(engine)
    assert engine.cache.busy == 0 and engine.cache.free_slots == 4 and not engine.active

    for name, (text, n, kw) in requests.items():
        (result,) = searches[name].results()[0]
        alone = model.generate(text, max_new_tokens=n, do_sample=False, logprobs=2, **kw)
        if name == "c":  # what it made before the cancel, unchanged
            assert result.finish_reason == "cancelled"
            assert result.token_ids == alone.token_ids[:5]
            assert_same_logprobs(result.logprobs, alone.sequences[0].logprobs[:5], name)
            continue
        assert_same_sequences([result], alone.sequences, name)
        # The oracle: transformers' greedy search with the same processors; it stops at the model's
        # eos as ours does.
        assert result.token_ids == hf_greedy(exported.checkpoint, ids[name], n, **kw), name


def test_mixed_settings_in_one_engine_keep_their_own_settings_and_random_streams(exported, models):
    model = models[exported.name]
    # Greedy with a processor, three sampling requests (one returning two sequences, two sharing a
    # seed on different prompts) and a beam search, all in one engine, joining at different steps.
    # Each must equal its alone run: a request that drew another's random numbers, or saw another's
    # settings or rows, would not.
    requests = {
        "sample": ("Once upon a time", dict(seed=11, do_sample=True, temperature=0.8, top_k=20, max_new_tokens=16)),
        "greedy": ("Hello, my dog is cute and", dict(do_sample=False, max_new_tokens=10, **NO_REPEAT)),
        "two": ("The meaning of life is", dict(seed=12, do_sample=True, top_p=0.9, num_return_sequences=2, max_new_tokens=12)),
        "beams": ("In 1492, Columbus sailed", dict(num_beams=3, num_return_sequences=2, max_new_tokens=8)),
        "same_seed": ("a", dict(seed=11, do_sample=True, temperature=0.8, top_k=20, max_new_tokens=9)),
    }
    requests = {name: (text, dict(settings, logprobs=2)) for name, (text, settings) in requests.items()}
    searches = {name: model.generator(**settings) for name, (_, settings) in requests.items()}
    engine = model.engine(slots=8)  # 1 + 1 + 2 + 3 + 1 rows: all fit together

    def submit(*names):
        for name in names:
            engine.submit(searches[name], [model.tokenizer.encode(requests[name][0])])

    submit("sample", "greedy")
    engine.step(), engine.step()
    submit("two", "beams")
    for _ in range(3):
        engine.step()
        check_rows(engine)
    submit("same_seed")
    engine.step()
    assert len(engine.active) == 5 and engine.cache.busy == 8  # all of them in one batch
    drain(engine)

    for name, (text, settings) in requests.items():
        assert_same_sequences(searches[name].results()[0], model.generate(text, **settings).sequences, name)


def test_shared_buffers_are_written_in_place_one_position_per_busy_row(models):
    model = models["tiny"]
    engine = model.engine(slots=4)
    cache = engine.cache
    assert isinstance(cache, SharedKVCache)
    # onnxruntime's OrtValue wraps the numpy array's own memory: the graph reads and writes there.
    addresses = [host.ctypes.data for _, host in cache.buffers]
    assert addresses == [address for address, _ in cache.buffers] and addresses[0] == cache.block.data_ptr()

    # Row moves (compaction when a request leaves or joins) are the only copies the cache makes:
    # count them, to show a steady step makes none.
    moves = []
    reorder = cache.reorder
    cache.reorder = lambda dst, src: (moves.append(len(dst)), reorder(dst, src))[1]

    requests = [
        ("The keys and values stay put", dict(max_new_tokens=14, logprobs=2, **NO_REPEAT)),
        ("Sampling rows too", dict(do_sample=True, seed=3, num_return_sequences=2, max_new_tokens=9, logprobs=2)),
        ("Short one", dict(max_new_tokens=3, logprobs=2)),
        ("Joins later", dict(max_new_tokens=12, logprobs=2, **NO_REPEAT)),
        ("And another", dict(do_sample=True, seed=4, max_new_tokens=10, logprobs=2)),
    ]
    searches = [model.generator(**settings) for _, settings in requests]
    pending = list(zip(searches, [model.tokenizer.encode(text) for text, _ in requests]))
    steady = churn = 0
    for step in range(60):
        if step % 4 == 0 and pending:  # join every few steps; the 4 slots force some to queue
            search, ids = pending.pop(0)
            engine.submit(search, [ids])
        if not engine.has_work() and not pending:
            break
        started = [s.state.started for s in searches]
        fed = [slot for s in engine.active for slot in s.state.slots if slot is not None]
        rows = np.array([slot.row for slot in fed], np.int64)
        lengths = cache.lengths[rows].copy()
        before = [host.copy() for _, host in cache.buffers]
        moves.clear()
        engine.step()
        check_rows(engine)
        assert [host.ctypes.data for _, host in cache.buffers] == addresses  # at every step, joins and leaves too
        joined = [s.state.started for s in searches] != started
        left = any(slot.row < 0 for slot in fed)
        if joined or left:
            churn += 1
            continue
        # A steady step: the same rows before and after. Every busy row ran its one pending token,
        # which took the next position of that row and nothing else in any buffer moved.
        steady += 1
        assert moves == []  # no row copies
        assert sorted(rows.tolist()) == list(range(cache.busy))
        assert (cache.lengths[rows] == lengths + 1).all()
        expected = np.zeros((cache.slots, cache.capacity), bool)  # [slots, capacity]: positions written
        expected[rows, lengths] = True
        for (_, host), old in zip(cache.buffers, before):
            changed = (host != old).any(axis=(1, 3))  # [slots, capacity]
            assert (changed == expected).all()
    assert steady >= 10 and churn >= 5  # the checks ran on many steps, between many joins and leaves
    assert not engine.has_work() and not pending
    assert [host.ctypes.data for _, host in cache.buffers] == addresses
    assert [address for address, _ in cache.buffers] == addresses and addresses[0] == cache.block.data_ptr()
    # The in-place batch changed nothing: every request made its alone tokens.
    for search, (text, settings) in zip(searches, requests):
        assert_same_sequences(search.results()[0], model.generate(text, **settings).sequences, text)


def test_prefix_reuse_gives_identical_tokens(exports, models):
    exported, model = exports["tiny"], models["tiny"]
    text = " ".join(f"Paragraph {i}: the slot keeps the keys and values of this prompt for the next request." for i in range(20))
    ids = model.tokenizer.encode(text)
    assert len(ids) >= 300
    engine = model.engine(slots=2)
    greedy = dict(max_new_tokens=20, do_sample=False, logprobs=2, **NO_REPEAT)
    alone = model.generate(text, **greedy)
    assert alone.token_ids == hf_greedy(exported.checkpoint, ids, 20, **NO_REPEAT)

    def first_token_then_rest(**settings):
        """Run a request in the engine: (its search, seconds to its first token)."""
        search = model.generator(**settings)
        start = time.perf_counter()
        engine.submit(search, [ids])
        assert search in engine.step()  # admitted, prefilled and its first token chosen
        ttft = time.perf_counter() - start
        drain(engine)
        return search, ttft

    first, first_ttft = first_token_then_rest(**greedy)
    assert first.timing.reused_tokens == 0  # a fresh engine holds nothing
    again, again_ttft = first_token_then_rest(**greedy)
    # Regenerate: all but the last prompt token are reused (its logits are needed to choose a token).
    assert again.timing.reused_tokens == len(ids) - 1
    assert_same_sequences(first.results()[0], alone.sequences, "first")
    assert_same_sequences(again.results()[0], alone.sequences, "regenerate")
    print(f"time to first token, {len(ids)}-token prompt: {first_ttft * 1e3:.1f} ms first, {again_ttft * 1e3:.1f} ms regenerated")

    # The same through generate(engine=...), the path the CLI and the app take.
    completion = model.generate(text, engine=engine, **greedy)
    assert completion.timing.reused_tokens == len(ids) - 1
    assert_same_sequences(completion.sequences, alone.sequences, "generate(engine=)")
    assert completion.text == alone.text

    # Continue: prompt + completion + more. The slot holds the prompt and every generated token but
    # the last (chosen, never fed), so all of those are reused.
    more = ids + alone.token_ids + model.tokenizer.encode(" And then the story went on, slot by slot.")
    search = model.generator(**greedy)
    engine.submit(search, [more])
    drain(engine)
    assert search.timing.reused_tokens == len(ids) + len(alone.token_ids) - 1 > len(ids)
    assert_same_sequences(search.results()[0], alone_ids(model, more, **greedy), "continue")
    assert search.results()[0][0].token_ids == hf_greedy(exported.checkpoint, more, 20, **NO_REPEAT)

    # Sampling regenerate with the same seed: the reused keys and values give the same draws.
    sampled = dict(do_sample=True, seed=21, max_new_tokens=20, top_k=0, logprobs=2)
    want = model.generate(text, **sampled)
    for _ in range(2):
        stream = model.stream(text, engine=engine, **sampled)
        streamed = "".join(stream)
        assert stream.completion.timing.reused_tokens == len(ids) - 1
        assert_same_sequences(stream.completion.sequences, want.sequences, "sampled regenerate")
        assert streamed == stream.completion.text == want.text

    # An unrelated prompt shares no prefix: it reuses nothing. It goes to the slot that holds least,
    # so the long prompt's slot survives and the next regenerate still reuses it.
    unrelated = "Zebras never share a first token with Paragraph"
    assert model.tokenizer.encode(unrelated)[0] != ids[0]
    other = model.generate(unrelated, engine=engine, **greedy)
    assert other.timing.reused_tokens == 0
    assert_same_sequences(other.sequences, model.generate(unrelated, **greedy).sequences, "unrelated")
    last = model.generate(text, engine=engine, **greedy)
    assert last.timing.reused_tokens == len(ids) - 1
    assert_same_sequences(last.sequences, alone.sequences, "regenerate after the unrelated prompt")


def test_requests_that_can_never_fit_and_bad_slot_counts_are_refused(models):
    model = models["tiny"]
    engine = model.engine(slots=2)
    ids = model.tokenizer.encode("Too many rows")
    # Rows needed = prompts x (num_return_sequences or num_beams): more than the engine has would wait forever.
    with pytest.raises(UsageError, match="needs 3 slots .* but the engine has 2"):
        engine.submit(model.generator(num_beams=3, max_new_tokens=4), [ids])
    with pytest.raises(UsageError, match="needs 4 slots"):
        engine.submit(model.generator(do_sample=True, num_return_sequences=2, max_new_tokens=4), [ids, ids])
    with pytest.raises(UsageError, match="needs 3 slots"):
        model.generate("Too many rows", engine=engine, num_beams=3, max_new_tokens=4)
    assert not engine.waiting and not engine.has_work()  # nothing refused was queued
    # Exactly as many rows as slots is fine.
    engine.submit(model.generator(num_beams=2, max_new_tokens=4), [ids])
    drain(engine)

    for slots in (0, -1, 1.5, True, "2", None):
        with pytest.raises(UsageError, match="slots must be a whole number >= 1"):
            model.engine(slots=slots)
