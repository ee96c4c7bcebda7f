"""The per-row constraint hook (runtime/constraints.py), with a small stateful processor of our
own: "the next token may not repeat the previous one", whose state is each row's last token.
Its state follows greedy and sampled rows, beam reorders (every beam returned obeys it, while
the same beams unconstrained do not), slot moves in a shared engine beside other requests
(which it leaves alone), cancels, and rollbacks.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpt2onnx.runtime import load
from gpt2onnx.runtime.constraints import RowConstraints
from gpt2onnx.runtime.kv_cache import new_cache

NEG_INF = np.float32(-np.inf)


class NoRepeat:
    """Bans the token the row took last. Its state: the tokens it accepted."""

    def __init__(self, taken: list[int] | None = None):
        self.taken = list(taken or [])

    def mask(self, scores: np.ndarray) -> np.ndarray:
        if self.taken:
            scores[self.taken[-1]] = NEG_INF
        return scores

    def accept(self, token: int) -> None:
        self.taken.append(token)

    def rollback(self, n: int) -> None:
        del self.taken[len(self.taken) - n :]

    def copy(self) -> NoRepeat:
        return NoRepeat(self.taken)


@pytest.fixture(scope="module")
def model(exports):
    return load(exports["tiny"].onnx_dir, provider="cpu")


def repeats(ids: list[int]) -> int:
    return sum(a == b for a, b in zip(ids, ids[1:]))


def reference(model, ids: list[int], n: int) -> list[int]:
    """Greedy search that bans the previous token, written out on a cache of its own."""
    cache = new_cache(model.session, 1, len(ids) + n)
    logits, out = cache.prefill(0, ids)[-1].copy(), []
    for _ in range(n):
        if out:
            logits[out[-1]] = NEG_INF
        out.append(int(logits.argmax()))
        logits = cache.decode(np.array([0]), np.array([out[-1]]))[0].copy()
    return out


def test_greedy_rows_follow_their_state(model):
    ids = model.tokenizer.encode("The the the the")
    plain = model.generate("The the the the", do_sample=False, max_new_tokens=30, min_new_tokens=30)
    assert repeats(plain.token_ids) > 0  # random weights repeat themselves: the constraint has work to do
    search = model.generator(do_sample=False, max_new_tokens=30, min_new_tokens=30, constraint=NoRepeat)
    search.append_tokens([ids])
    while not search.is_done():
        search.generate_next_token()
    got = search.results()[0][0].token_ids
    assert got == reference(model, ids, 30) and repeats(got) == 0
    assert search.constraints.rows[0].taken == got  # it accepted exactly the row's tokens


def test_beams_and_sampled_rows_keep_their_own_state(model):
    for settings in (dict(num_beams=4, num_return_sequences=4), dict(do_sample=True, num_return_sequences=3)):
        kwargs = dict(max_new_tokens=24, min_new_tokens=24, **settings)
        plain = model.generate("The the the the", seed=3, **kwargs)
        constrained = model.generate("The the the the", seed=3, constraint=NoRepeat, **kwargs)
        assert sum(repeats(s.token_ids) for s in plain.sequences) > 0, settings
        for s in constrained.sequences:
            assert repeats(s.token_ids) == 0 and len(s.token_ids) == 24, settings


def test_in_an_engine_its_state_follows_slot_moves_and_leaves_others_alone(model):
    engine = model.engine(slots=3, step_tokens=5)
    prompts = ["The the the the", "Hello, my dog is cute", "A a a a", "In 1492, Columbus"]
    lengths = [20, 4, 30, 12]  # the second ends early: rows move to keep the busy ones first
    runs = []
    for i, (prompt, n) in enumerate(zip(prompts, lengths)):
        constraint = NoRepeat if i % 2 == 0 else None
        runs.append(model.run([prompt], model.config(do_sample=False, max_new_tokens=n, min_new_tokens=n), engine=engine, constraint=constraint))
    while engine.has_work():
        engine.step()
        for run in runs:
            run.poll()
    cancelled = model.run(["The the"], model.config(do_sample=False, max_new_tokens=50), engine=engine, constraint=NoRepeat)
    for _ in range(4):
        engine.step()
    cancelled.cancel()
    while not cancelled.finished:
        cancelled.poll()
        engine.step()
    assert cancelled.completions()[0].finish_reason == "cancelled"
    for run, prompt, n in zip(runs, prompts, lengths):
        got = run.completions()[0].token_ids
        if run.search.constraint is NoRepeat:
            assert got == reference(model, model.tokenizer.encode(prompt), n), prompt
        else:
            assert got == model.generate(prompt, do_sample=False, max_new_tokens=n, min_new_tokens=n).token_ids, prompt


def test_rollback_and_reorder_of_row_states():
    states = RowConstraints(NoRepeat, 3)
    states.accept(np.array([5, 6, 7]))
    states.accept(np.array([8, 9, 10]), rows=np.array([True, False, True]))
    assert [s.taken for s in states.rows] == [[5, 8], [6], [7, 10]]
    states.rollback(0, 1)
    assert states.rows[0].taken == [5]
    states.reorder(np.array([2, 2, 0]))  # beam 2 continues twice: the second gets a copy
    states.accept(np.array([1, 2, 3]))
    assert [s.taken for s in states.rows] == [[7, 10, 1], [7, 10, 2], [5, 3]]
    masked = states.apply(np.zeros((3, 12), np.float32))
    assert [int(np.flatnonzero(np.isinf(row))[0]) for row in masked] == [1, 2, 3]
