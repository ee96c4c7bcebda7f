"""Moving KV-cache rows on the device (runtime/kv_rows.py): the shipped graphs,
the graph's moves against numpy's, and whole beam searches and slot engines with
the cache held where the host can't reach it. On this CPU machine "the device" is
onnxruntime's CPU provider with the host view withheld, so the CUDA code path
(graph, bindings, in-place ScatterND) runs here; tests/test_cuda.py runs it on CUDA.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from gpt2onnx.export import kv_rows_graph
from gpt2onnx.runtime import kv_rows, load
from gpt2onnx.runtime.kv_cache import SharedKVCache, new_cache

from conftest import hf_greedy, run_staggered
from test_decoding import hf_generate

CASES = [  # (dst, src): a swap, a 3-cycle, one row copied to two, a beam reorder that keeps one row, nothing
    ([0, 1], [1, 0]),
    ([0, 1, 2], [1, 2, 0]),
    ([1, 3], [0, 0]),
    ([0, 1, 2, 3], [2, 2, 0, 3]),
    ([2], [2]),
]


def test_the_shipped_graphs_are_the_generator_s(tmp_path):
    for path in kv_rows_graph.write(tmp_path):
        assert path.read_bytes() == (kv_rows.GRAPHS / path.name).read_bytes(), f"{path.name}: run python -m gpt2onnx.export.kv_rows_graph"


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("dst, src", CASES)
def test_the_graph_moves_rows_in_place_like_numpy(dtype, dst, src):
    rng = np.random.default_rng(0)
    shape = (6, 4, 3, 8, 5)  # [2 * n_layer, slots, n_head, capacity, head_dim]
    block = (rng.standard_normal(shape) * 50).astype(dtype)
    expected = block.copy()
    kv_rows.move_host(expected, np.array(dst), np.array(src), shape[3])
    assert np.array_equal(expected, block) == (dst == src)  # a move that does nothing would fail the others
    value = ort.OrtValue.ortvalue_from_numpy(block)  # shares block's memory
    kv_rows.RowMover(np.dtype(dtype), ["CPUExecutionProvider"], 1).move(value, "cpu", np.array(dst), np.array(src))
    assert value.data_ptr() == block.ctypes.data and np.array_equal(block, expected)


BEAMS = [
    dict(num_beams=3, max_new_tokens=12, do_sample=False),
    dict(num_beams=4, num_return_sequences=2, max_new_tokens=10, length_penalty=0.5, do_sample=False),
]


@pytest.mark.parametrize("settings", BEAMS)
def test_beam_search_on_a_device_cache_equals_the_host_s_and_transformers(exports, device_cache, settings):
    exported = exports["tiny"]
    model = load(exported.onnx_dir, provider="cpu")
    assert isinstance(new_cache(model.session, 1, 4), SharedKVCache)
    prompt = "The keys and values of these beams"
    ours = model.generate(prompt, **settings)
    assert sum(device_cache) > 0  # the beams' reorders ran through the graph
    ids = model.tokenizer.encode(prompt)
    theirs, scores = hf_generate(exported.checkpoint, ids, **settings)
    assert [s.token_ids for s in ours.sequences] == [t[: len(s.token_ids)] for s, t in zip(ours.sequences, theirs)]
    assert np.allclose([s.score for s in ours.sequences], scores, atol=1e-4)


def test_a_slot_engine_on_a_device_cache_makes_each_request_s_alone_tokens(exports, device_cache):
    exported = exports["tiny"]
    model = load(exported.onnx_dir, provider="cpu")
    requests = [("Joins first", 9), ("A second, longer request that runs a while", 14), ("Short", 3), ("Leaves last of all", 11)]
    engine = model.engine(slots=2)  # four requests through two slots: rows swap as they join and leave
    searches = [model.generator(max_new_tokens=n, do_sample=False) for _, n in requests]
    run_staggered(engine, [(search, model.tokenizer.encode(text)) for search, (text, _) in zip(searches, requests)], every=3)
    assert sum(device_cache) > 0  # compaction moved rows through the graph
    for search, (text, n) in zip(searches, requests):
        assert search.results()[0][0].token_ids == hf_greedy(exported.checkpoint, model.tokenizer.encode(text), n)


def test_an_export_cuda_can_t_run_is_refused_or_runs_on_the_cpu_with_the_reason(exports, monkeypatch):
    """Where CUDA works, a float32 GroupQueryAttention export would run its attention on the CPU,
    copying the KV cache across at every step: "cuda" refuses it in one line, "auto" says why it
    runs on the CPU. (cuda_problem() is made to say CUDA works: this machine has none.)"""
    import warnings

    from gpt2onnx.runtime import providers
    from gpt2onnx.runtime.errors import ProviderError

    monkeypatch.setattr(providers, "cuda_problem", lambda: None)
    why = "onnxruntime's GroupQueryAttention runs on CUDA in float16 only, and this export is float32: export with --float16 for CUDA"
    with pytest.raises(ProviderError) as refused:
        load(exports["tiny"].onnx_dir, provider="cuda")
    assert str(refused.value) == f"CUDA was asked for but can't run here: {why}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(exports["tiny"].onnx_dir, provider="auto")
    assert model.provider == "cpu" and model.provider_note == f"running on CPU: {why}"
    assert [str(w.message) for w in caught if issubclass(w.category, providers.ProviderFallbackWarning)] == [model.provider_note]
