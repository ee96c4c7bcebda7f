"""The graph `gpt2onnx export` writes: GroupQueryAttention with a KV cache that
onnxruntime updates in place, its int8 and float16 variants, and Optimum's
plain graph where asked for or where the fast one can't express the checkpoint.

Parity with transformers for the default graph is in test_parity, test_decoding,
test_generation and test_scoring (every fixture export is this graph); here are
the layout itself and the variants.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpt2onnx.export.optimize import GraphPlan
from gpt2onnx.export.pipeline import export_model
from gpt2onnx.export.random_model import make_random_gpt2
from gpt2onnx.runtime import load
from gpt2onnx.runtime.kv_cache import ConcatKVCache, SharedKVCache, new_cache
from gpt2onnx.runtime.providers import cuda_problem

from conftest import hf_greedy, run_cli

PROMPTS = ("The cache is written in place", "Once upon a time, far away", "1, 2, 3, 4, 5,")


@pytest.fixture(scope="module")
def peaked(tmp_path_factory):
    """A random GPT-2 with peaked next-token distributions (as a trained one has), in three exports."""
    root = tmp_path_factory.mktemp("variants")
    checkpoint = make_random_gpt2(root / "checkpoint", n_layer=2, n_head=4, n_embd=64, n_positions=256, seed=3, initializer_range=0.3, perturb=0.1)
    reports = {w: export_model(str(checkpoint), root / w, plan=GraphPlan("gqa", w)) for w in ("float32", "int8", "float16")}
    return checkpoint, root, reports


def test_the_kv_cache_is_one_buffer_written_in_place(exports):
    model = load(exports["tiny"].onnx_dir, provider="cpu")
    assert model.info.kv_cache == "shared" and model.session.shared_kv
    prompt = model.tokenizer.encode("The keys and values of these tokens")
    cache = new_cache(model.session, 1, 32)
    assert isinstance(cache, SharedKVCache)
    address, host = cache.buffers[0]  # layer 0's keys, [1, n_head, 32, head_dim]
    assert host.shape == (1, model.info.n_head, 32, model.info.head_dim)
    assert address == host.ctypes.data == cache.block.data_ptr()  # layer 0's keys open the block
    filled = lambda: int((np.abs(host[0, 0]).sum(axis=-1) > 0).sum())  # noqa: E731 - slots written so far
    cache.prefill(0, prompt)
    assert filled() == len(prompt) and cache.lengths.tolist() == [len(prompt)]
    for n in range(1, 4):
        cache.decode(np.array([0]), np.array([464]))
        assert filled() == len(prompt) + n  # one more slot each step, in the same memory
    assert host.ctypes.data == address and cache.block.data_ptr() == address  # onnxruntime wrote into our buffer, no copy


def test_rows_of_different_lengths_step_together_and_a_prefill_touches_one_row(exports):
    """Slots: each row prefilled in its own memory, then one batched step over rows of different
    lengths gives each row the logits it gets alone (checked against transformers through
    generation in test_decoding and test_engine)."""
    model = load(exports["odd_heads"].onnx_dir, provider="cpu")
    rows = [model.tokenizer.encode(p) for p in PROMPTS]
    cache = new_cache(model.session, 3, 32)
    for r, row in enumerate(rows):
        before = [host.copy() for _, host in cache.buffers]
        cache.prefill(r, row)
        for (_, host), old in zip(cache.buffers, before):
            others = np.arange(3) != r
            assert np.array_equal(host[others], old[others])  # the other rows' keys and values are untouched
    batched = cache.decode(np.arange(3), np.array([464, 464, 464]))  # [3, vocab]
    for r, row in enumerate(rows):
        alone = new_cache(model.session, 1, len(row) + 1).prefill(0, row + [464])[0]
        assert np.abs(batched[r] - alone).max() < 1e-4


def test_the_default_graph_is_fused_and_fusing_never_needs_the_weight_matrices(exports):
    """onnxruntime's optimizer fuses each block's residual Adds + LayerNorms and its GELU. It
    runs before the weight matrices get their bytes (memory), which must change nothing."""
    import collections

    import onnx

    from gpt2onnx.export import fast_graph, optimize

    tiny = exports["tiny"]
    config = json.loads((tiny.checkpoint / "config.json").read_text())
    n_layer = config["n_layer"]
    nodes = onnx.load(str(tiny.onnx_dir / "model.onnx")).graph.node
    ops = collections.Counter(node.op_type for node in nodes)
    # Two attention nodes a block: the rows' and the prompt chunk's (chunk_graph.py). Every LayerNorm
    # but the first block's ln_1 takes in its residual Add; that one follows the Concat of the rows'
    # and the chunk's embeddings.
    assert ops["GroupQueryAttention"] == 2 * n_layer and ops["SkipLayerNormalization"] == 2 * n_layer - 1 and ops["FastGelu"] == n_layer
    # c_attn's output goes to GroupQueryAttention whole, as packed QKV: Splits only part the rows' tokens from the chunk's (axis 0).
    splits = [node for node in nodes if node.op_type == "Split"]
    assert len(splits) == n_layer + 2 and all(a.i == 1 for node in splits for a in node.attribute if a.name == "axis")

    weights = fast_graph.read_weights(tiny.onnx_dir / "model.onnx")  # the fused graph keeps every PyTorch name
    lean, matrices = fast_graph.build(dict(weights), config)
    assert all(not tensor.raw_data for tensor in lean.graph.initializer if len(tensor.dims) >= 2)
    lean = optimize.fuse(lean, config)
    fast_graph.attach_matrices(lean, matrices)
    assert not matrices  # every matrix went back in

    whole, matrices = fast_graph.build(dict(weights), config)
    fast_graph.attach_matrices(whole, matrices)  # the optimizer sees every byte
    assert lean.SerializeToString() == optimize.fuse(whole, config).SerializeToString()


@pytest.mark.slow  # three exports of the peaked model (~20 s)
def test_int8_and_float16_variants_agree_with_float32(peaked):
    checkpoint, root, reports = peaked
    models = {w: load(root / w, provider="cpu") for w in reports}
    assert {w: m.info.weights for w, m in models.items()} == {"float32": "float32", "int8": "int8", "float16": "float16"}
    assert models["float16"].info.dtype == "float16" and models["int8"].info.dtype == "float32"
    sizes = {w: (root / w / "model.onnx").stat().st_size for w in reports}
    # int8 stores each MatMul weight in a quarter of the bytes; wte stays float32 for the lookup.
    matmul_bytes = 2 * (64 * 192 + 64 * 64 + 2 * 64 * 256) * 4 + 64 * 50257 * 4
    assert sizes["float32"] - sizes["int8"] > 0.6 * matmul_bytes - 64 * 50257 * 4
    assert sizes["float16"] < 0.55 * sizes["float32"]
    v = {w: reports[w].validation for w in reports}
    print({w: (f"{v[w]['max_abs_diff']:.3g}", f"{v[w]['max_abs_diff'] / v[w]['logit_scale']:.2%}", v[w]["top1_agreement"]) for w in v})
    assert v["float32"]["max_abs_diff"] < 1e-4 and v["float32"]["top1_agreement"] == 1.0
    assert v["float16"]["max_abs_diff"] < 0.01 * v["float16"]["logit_scale"] and v["float16"]["top1_agreement"] == 1.0
    assert v["int8"]["max_abs_diff"] < 0.1 * v["int8"]["logit_scale"] and v["int8"]["top1_agreement"] >= 0.9
    for prompt in PROMPTS:
        ids = models["float32"].tokenizer.encode(prompt)
        want = hf_greedy(checkpoint, ids, 16)
        got = {w: m.generate(prompt, max_new_tokens=16, do_sample=False).token_ids for w, m in models.items()}
        assert got["float32"] == want and got["float16"] == want
        # int8 on random weights: its first token is PyTorch's (top1_agreement above covers every position);
        # benchmarks/speed.py reports how long greedy runs agree on the trained default model.
        assert got["int8"][0] == want[0]


@pytest.mark.slow  # two exports (~13 s)
def test_optimum_graph_on_request_and_for_checkpoints_the_fast_one_cant_express(tmp_path):
    checkpoint = make_random_gpt2(tmp_path / "odd", n_layer=2, n_head=3, n_embd=36, n_positions=64, seed=5, perturb=0.1)  # head_dim 12
    report = export_model(str(checkpoint), tmp_path / "kept")
    assert report.graph["kv_cache"] == "concat" and "multiple of 8" in report.graph["plain_graph_because"]
    asked = run_cli("export", str(exports_checkpoint(tmp_path)), str(tmp_path / "plain"), "--graph", "optimum", "--quiet")
    assert asked.returncode == 0, asked.stderr
    assert json.loads((tmp_path / "plain" / "manifest.json").read_text())["kv_cache"] == "concat"
    for folder, source in ((tmp_path / "kept", checkpoint), (tmp_path / "plain", exports_checkpoint(tmp_path))):
        model = load(folder, provider="cpu")
        assert isinstance(new_cache(model.session, 1, 8), ConcatKVCache)
        ids = model.tokenizer.encode(PROMPTS[0])
        assert model.generate(PROMPTS[0], max_new_tokens=12, do_sample=False).token_ids == hf_greedy(source, ids, 12)
    refused = run_cli("export", str(checkpoint), str(tmp_path / "int8"), "--int8")
    assert refused.returncode == 2 and "multiple of 8" in refused.stderr and "Traceback" not in refused.stderr


def exports_checkpoint(tmp_path):
    path = tmp_path / "plain-ckpt"
    if not path.exists():
        make_random_gpt2(path, n_layer=2, n_head=4, n_embd=64, n_positions=128, seed=6, perturb=0.1)
    return path


@pytest.mark.skipif(cuda_problem() is not None, reason=f"no usable CUDA here: {cuda_problem()}")
def test_cuda_keeps_the_cache_on_the_device_and_matches_the_cpu(peaked):
    checkpoint, root, _ = peaked
    model = load(root / "float16", provider="cuda")
    assert model.provider == "cuda"
    cache = new_cache(model.session, 1, 16)
    assert all(value.device_name().lower() == "cuda" and host is None for value, host in cache.buffers)
    cpu = load(root / "float32", provider="cpu")
    for prompt in PROMPTS:
        assert model.generate(prompt, max_new_tokens=12, do_sample=False).token_ids == cpu.generate(prompt, max_new_tokens=12, do_sample=False).token_ids
    beams = dict(max_new_tokens=8, num_beams=3, do_sample=False)
    assert model.generate(PROMPTS[1], **beams).token_ids == cpu.generate(PROMPTS[1], **beams).token_ids
