"""Chunked prefill in the slot engine (runtime/engine.py's token budget): a step runs one token
for every running row, then prompt chunks up to `step_tokens`. A long prompt is prefilled over
several steps while the other requests make one token each step, and every request still gets
exactly its alone tokens (and transformers' greedy ids): with staggered arrivals, beams,
sampling with seeds, prefix reuse, and cancels, also of a request mid-prefill. The step's first
chunk carries the decode tokens in its pass (the graph's chunk part); an export made before that
part existed runs its chunks as passes of their own, with the same tokens.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gpt2onnx.export import fast_graph, optimize
from gpt2onnx.export.onnx_export import save_onnx
from gpt2onnx.runtime import UsageError, contract, load
from gpt2onnx.runtime.manifest import sha256_file

from conftest import hf_greedy

NO_REPEAT = dict(no_repeat_ngram_size=1)  # random weights: see test_engine.py


@pytest.fixture(scope="module")
def tiny(exports):
    return exports["tiny"], load(exports["tiny"].onnx_dir, provider="cpu")


@pytest.fixture(scope="module")
def rows_only(exports, tmp_path_factory):
    """The tiny export as exports were before the graph's chunk part (no packed_chunk in the manifest):
    its chunks run as passes of their own."""
    exported = exports["tiny"]
    folder = tmp_path_factory.mktemp("rows_only") / "onnx"
    shutil.copytree(exported.onnx_dir, folder)
    config = json.loads((exported.checkpoint / "config.json").read_text())
    graph, matrices = fast_graph.build(fast_graph.read_weights(folder / contract.MODEL_FILE), config, packed_chunk=False)
    graph = optimize.fuse(graph, config)
    fast_graph.attach_matrices(graph, matrices)
    save_onnx(graph, folder / contract.MODEL_FILE)
    manifest = json.loads((folder / contract.MANIFEST_FILE).read_text())
    del manifest["packed_chunk"]
    manifest["io"] = contract.io_signature(config["n_layer"], kv_cache=contract.SHARED_KV)
    manifest["files"][contract.MODEL_FILE] = {"bytes": (folder / contract.MODEL_FILE).stat().st_size, "sha256": sha256_file(folder / contract.MODEL_FILE)}
    (folder / contract.MANIFEST_FILE).write_text(json.dumps(manifest))
    model = load(folder, provider="cpu")
    assert not model.info.packed_chunk
    return exported, model


def alone(model, ids, seed=None, **settings):
    search = model.generator(seed=seed, **settings)
    search.append_tokens([ids])
    while not search.is_done():
        search.generate_next_token()
    return search.results()[0]


def test_a_long_prompt_is_prefilled_over_steps_while_another_request_decodes(tiny):
    exported, model = tiny
    engine = model.engine(slots=2, step_tokens=8)
    short = model.tokenizer.encode("The quick brown fox")
    long = (model.tokenizer.encode(" Once upon a time there was a king who ruled a land far away.") * 8)[:100]
    a = model.generator(max_new_tokens=30, do_sample=False, logprobs=2, **NO_REPEAT)
    b = model.generator(max_new_tokens=6, do_sample=False, logprobs=2, **NO_REPEAT)
    engine.submit(a, [short])
    engine.step()  # a's 4 prompt tokens fit in one step: it chooses its first token at once
    assert a.timing.new_tokens == 1
    engine.submit(b, [long])
    held = []
    while b.state.prefilling or not b.state.started:
        made, runs = a.timing.new_tokens, model.session.runs
        engine.step()
        assert a.timing.new_tokens == made + 1  # a never waits for b's prompt
        assert model.session.runs == runs + 1  # a's token rides in the pass of b's chunk: the weights are read once
        held.append(int(engine.cache.lengths[b.state.slots[0].row]))
    # 1 decode token + 7 prompt tokens' worth a step: a token at position p costs 1 + p / (4 n_embd) of
    # them (its attention), so the chunks shrink from 7 as b's row fills; the last step chooses b's first token.
    chunks = np.diff([0, *held])
    assert chunks[0] == 7 and all(a >= b >= 1 for a, b in zip(chunks, chunks[1:-1])) and held[-1] == 100
    assert chunks[-2] < 7
    assert b.timing.new_tokens == 1
    while engine.has_work():
        engine.step()
    for search, ids, n in ((a, short, 30), (b, long, 6)):
        (got,) = search.results()[0]
        (want,) = alone(model, ids, max_new_tokens=n, do_sample=False, logprobs=2, **NO_REPEAT)
        assert got.token_ids == want.token_ids
        np.testing.assert_allclose([r.logprob for r in got.logprobs], [r.logprob for r in want.logprobs], atol=1e-4)
        assert got.token_ids == hf_greedy(exported.checkpoint, ids, n, **NO_REPEAT)


@pytest.mark.parametrize("step_tokens,graph", [(1, "tiny"), (5, "tiny"), (64, "tiny"), (5, "rows_only")])
def test_every_request_gets_its_alone_tokens_with_chunking(request, step_tokens, graph):
    exported, model = request.getfixturevalue(graph)
    text = "In the beginning the universe was created, which made a lot of people very angry."
    requests = {  # name: (prompt, settings, step at which it arrives)
        "greedy": (text, dict(do_sample=False, max_new_tokens=12, logprobs=1, **NO_REPEAT), 0),
        "sample": ("Once upon a time", dict(do_sample=True, seed=5, temperature=0.9, top_k=30, num_return_sequences=2, max_new_tokens=10), 0),
        "beams": ("Hello, my dog is cute and", dict(num_beams=3, num_return_sequences=2, max_new_tokens=8, **NO_REPEAT), 2),
        "reuse": (text + " Then", dict(do_sample=False, max_new_tokens=9, **NO_REPEAT), 30),  # after greedy ended: its prefix
        "cancel_mid_prefill": (text * 3, dict(do_sample=False, max_new_tokens=5), 3),
        "cancel_decoding": ("A fortune cookie says", dict(do_sample=False, max_new_tokens=40, **NO_REPEAT), 1),
    }
    engine = model.engine(slots=8, step_tokens=step_tokens)
    assert engine.cache.packs == (graph == "tiny")
    searches = {name: model.generator(seed=kw.get("seed"), **{k: v for k, v in kw.items() if k != "seed"}) for name, (_, kw, _) in requests.items()}
    ids = {name: model.tokenizer.encode(prompt) for name, (prompt, _, _) in requests.items()}
    step = 0
    while step < 200 and (engine.has_work() or step <= max(at for _, _, at in requests.values())):
        for name, (_, _, at) in requests.items():
            if at == step:
                engine.submit(searches[name], [ids[name]])
        if step == 4:
            engine.cancel(searches["cancel_mid_prefill"])
        if searches["cancel_decoding"].timing.new_tokens == 6:
            engine.cancel(searches["cancel_decoding"])
        engine.step()
        step += 1
    assert not engine.has_work() and engine.cache.busy == 0
    if step_tokens < 40:  # its 3 x 19-token prompt was still prefilling at the cancel: nothing made
        assert not searches["cancel_mid_prefill"].state.started
    assert searches["cancel_decoding"].results()[0][0].finish_reason == "cancelled"
    assert engine.step_tokens == step_tokens
    for name, (prompt, kw, _) in requests.items():
        if name == "cancel_mid_prefill":
            continue
        seed = kw.get("seed")
        want = alone(model, ids[name], seed=seed, **{k: v for k, v in kw.items() if k != "seed"})
        got = searches[name].results()[0]
        if name == "cancel_decoding":
            assert got[0].token_ids == want[0].token_ids[:6]
            continue
        assert [s.token_ids for s in got] == [s.token_ids for s in want], name
        if name == "beams":
            assert [s.score for s in got] == pytest.approx([s.score for s in want], rel=1e-4, abs=1e-5)
        if name in ("greedy", "reuse"):
            settings = {k: v for k, v in kw.items() if k not in ("do_sample", "max_new_tokens", "logprobs")}
            assert got[0].token_ids == hf_greedy(exported.checkpoint, ids[name], kw["max_new_tokens"], **settings), name
    assert searches["reuse"].timing.reused_tokens == len(ids["greedy"])  # only the new part of its prompt ran


def test_rows_decoding_around_a_prefilling_row_get_their_own_logits(tiny):
    # Rows 0-2 decode and row 3 prefills a long prompt; when row 1's request ends, the prefilling row
    # moves into its place, so the decode pass runs rows 0 and 2 around it: two runs of the batch.
    _, model = tiny
    engine = model.engine(slots=4, step_tokens=6)
    prompts = {"a": "The quick brown fox", "b": "Hello, my dog", "c": "In 1492, Columbus", "long": "Once upon a time, " * 12}
    lengths = {"a": 20, "b": 6, "c": 20, "long": 4}
    searches = {name: model.generator(max_new_tokens=lengths[name], do_sample=False, logprobs=1, **NO_REPEAT) for name in prompts}
    ids = {name: model.tokenizer.encode(text) for name, text in prompts.items()}
    for name in "abc":
        engine.submit(searches[name], [ids[name]])
    while not all(searches[name].state.started for name in "abc"):  # a step that decodes runs one prompt chunk
        engine.step()
    assert searches["b"].timing.new_tokens < lengths["b"]
    engine.submit(searches["long"], [ids["long"]])
    split = False
    while engine.has_work():
        engine.step()
        decoding = sorted(slot.row for name in "abc" for slot in searches[name].state.slots if slot is not None)
        split |= searches["long"].state.prefilling and decoding == [0, 2]
    assert split  # the case this test is about happened
    for name in prompts:
        (got,) = searches[name].results()[0]
        (want,) = alone(model, ids[name], max_new_tokens=lengths[name], do_sample=False, logprobs=1, **NO_REPEAT)
        assert got.token_ids == want.token_ids, name
        np.testing.assert_allclose([r.logprob for r in got.logprobs], [r.logprob for r in want.logprobs], atol=1e-4, err_msg=name)


def test_step_tokens_is_checked(tiny):
    _, model = tiny
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(UsageError, match="step_tokens must be a whole number >= 1"):
            model.engine(slots=2, step_tokens=bad)
