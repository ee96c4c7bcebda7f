"""No request can cost another more than its share, in the runtime (the server's part is in
test_serve_attacks.py): a search whose own part of an engine step raises fails alone while the
others finish with their alone tokens; a sliding request's budget allocates nothing up front; a
request that bans every token is refused before it runs; stop strings are matched in linear
time and exactly as the plain definition says; a vanishing temperature is greedy search.

All on the shipped default model: no export, a few seconds.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2onnx.runtime import UsageError, load, sampling
from gpt2onnx.runtime.stops import StopMatcher

GREEDY = dict(do_sample=False, max_new_tokens=12, min_new_tokens=12, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def model():
    return load(provider="cpu", threads=1)


def alone(model, prompt: str, **kwargs) -> list[int]:
    return model.generate(prompt, **{**GREEDY, **kwargs}).token_ids


@pytest.mark.parametrize("where", ["advance", "prefill"])
def test_a_search_that_raises_in_a_step_fails_alone(model, where):
    engine = model.engine(slots=3)
    prompts = ["Once upon a time", "The secret of happiness is", "A fortune cookie says"]
    runs = [model.run([p], model.config(**GREEDY), engine=engine) for p in prompts]
    victim = runs[1]
    if where == "advance":  # its choice raises at its fourth step, after it has streamed tokens
        real, calls = victim.search.advance, []

        def advance():
            calls.append(1)
            if len(calls) == 4:
                raise MemoryError("Unable to allocate 7.11 PiB")
            return real()

        victim.search.advance = advance
    else:  # its prompt's forward pass raises after its row was taken from the cache
        real_prefill, victim_ids = engine.cache.prefill, model.encode_prompt(prompts[1])

        def prefill(row, ids, reused):
            if list(ids) == victim_ids:
                raise MemoryError("Unable to allocate 7.11 PiB")
            return real_prefill(row, ids, reused)

        engine.cache.prefill = prefill
    made = {i: [] for i in range(3)}
    while engine.has_work():
        engine.step()
        for i, run in enumerate(runs):
            if i == 1:
                continue
            for delta in run.poll():
                made[i] += delta.token_ids
    with pytest.raises(MemoryError, match="7.11 PiB"):
        victim.poll()
    assert victim.finished and victim.search.is_done()
    for i in (0, 2):
        assert made[i] == alone(model, prompts[i]), prompts[i]
    assert engine.cache.free_slots == 3  # the failed search gave its rows back
    # The engine goes on serving (the prompt that failed too, once its fault is gone).
    engine.cache.__dict__.pop("prefill", None)
    assert model.generate(prompts[1], engine=engine, **GREEDY).token_ids == alone(model, prompts[1])


def test_a_sliding_budget_allocates_as_tokens_are_made(model):
    search = model.generator(do_sample=False, max_new_tokens=10**15, min_new_tokens=10**6, context_overflow="slide")
    search.append_tokens([model.encode_prompt("Once upon a time")])
    assert search.state.tokens.nbytes <= 8 * 2 * model.info.n_positions  # not 10**15 columns
    for _ in range(model.info.n_positions + 40):  # past the context: it slides, and the buffer grows
        search.generate_next_token()
    assert search.state.length == 4 + model.info.n_positions + 40
    assert search.state.tokens.shape[1] >= search.state.length
    search.cancel()


def test_banning_every_token_is_refused_before_it_runs(model):
    everything = [[t] for t in range(model.info.vocab_size)]
    with pytest.raises(UsageError, match="bans every token but eos.*ban fewer tokens"):
        model.config(bad_words_ids=everything, min_new_tokens=3, do_sample=True)
    with pytest.raises(UsageError, match="every token is banned"):  # and if a step ever has nothing to draw
        sampling.sample_rows([(np.empty(0, np.int64), np.empty(0, np.float32))], np.random.default_rng(0))
    # Banning all but eos without forcing length is valid: the answer ends at once.
    done = model.generate("Hi", bad_words_ids=everything, do_sample=True, max_new_tokens=5, seed=1)
    assert done.token_ids == [model.generation_config.eos_token_ids[0]] and done.finish_reason == "eos"


def test_a_vanishing_temperature_is_greedy_search(model):
    for temperature in (1e-39, 1e-45, 5e-324):
        got = model.generate("Once upon a time", do_sample=True, temperature=temperature, top_k=0, top_p=1.0, seed=3, max_new_tokens=12, min_new_tokens=12, repetition_penalty=1.0)
        assert got.token_ids == alone(model, "Once upon a time"), temperature


def naive_stops(stops: tuple[str, ...], deltas: list[str]) -> tuple[str, bool]:
    """The definition: the text up to where the first stop string begins (all of it if none)."""
    text = "".join(deltas)
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


@settings(max_examples=400, deadline=None)
@given(
    stops=st.lists(st.text("ab\n", min_size=1, max_size=6), min_size=1, max_size=4).map(tuple),
    deltas=st.lists(st.text("abc\n", max_size=5), max_size=10),
)
def test_stop_matching_is_the_plain_definition(stops, deltas):
    matcher, out = StopMatcher(stops), ""
    for delta in deltas:
        out += matcher.feed(delta)
    out += "" if matcher.stopped else matcher.flush()
    want, stopped = naive_stops(stops, deltas)
    # A stop the text completes is cut where it begins; text after the first completed stop never
    # shows, even if it would have begun an earlier stop (the stream was already cut).
    assert matcher.stopped == stopped
    if not stopped:
        assert out == want
    else:
        first = next(i for i in range(len(deltas)) if naive_stops(stops, deltas[: i + 1])[1])
        assert out == naive_stops(stops, deltas[: first + 1])[0]


def test_a_long_stop_string_is_held_back_then_released():
    # A 1 MB stop string froze the server's scheduler for 24 s: each delta tried every prefix of it.
    # Its matcher now keeps how much of the stop the text ends with, and steps it per new character.
    stop = "x" * 1_000_000
    matcher = StopMatcher((stop, "y" * 1000))
    held = 0
    rnd = random.Random(0)
    for _ in range(500):
        delta = "x" * rnd.randint(1, 4)
        assert matcher.feed(delta) == ""  # all of it could still begin the stop
        held += len(delta)
    assert matcher.flush() == "x" * held and not matcher.stopped
