"""The int8 KV cache (`gpt2onnx export --kv-cache-dtype int8`): GroupQueryAttention
stores keys and values as int8 with one calibrated scale per layer, head and channel
(export/kv_quant.py).

Float32 weights here, so the cache is the only rounding. On the shipped model's trained
weights it is checked against transformers as float32 is (greedy, beams, scores, the
held-out perplexity); on random weights, whose attention is far more peaked than a
trained model's, as int8 weights are (drift bound, top-1 agreement, first tokens), and
for the layout, its memory, batching and its errors. With int8 and int4 weights the
perplexity is in benchmarks/quality.py.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import onnx
import pytest
import torch

from gpt2onnx.export.optimize import GraphPlan
from gpt2onnx.export.pipeline import export_model
from gpt2onnx.export.random_model import make_random_gpt2
from gpt2onnx.export.rebuild import rebuild_checkpoint
from gpt2onnx.runtime import DEFAULT_MODEL, load
from gpt2onnx.runtime.errors import ModelLoadError
from gpt2onnx.runtime.kv_cache import new_cache

from benchmarks.quality import heldout_texts, perplexity
from conftest import hf_greedy, run_cli, torch_model

PROMPTS = ("The cache is written in place", "Once upon a time, far away", "1, 2, 3, 4, 5,")


@pytest.fixture(scope="module")
def kv8(tmp_path_factory):
    """A random GPT-2 with peaked next-token distributions (as a trained one has), float32 weights, int8 KV cache."""
    root = tmp_path_factory.mktemp("kv8")
    checkpoint = make_random_gpt2(root / "checkpoint", n_layer=2, n_head=4, n_embd=64, n_positions=256, seed=3, initializer_range=0.1, perturb=0.1)
    report = export_model(str(checkpoint), root / "kv8", plan=GraphPlan(kv_cache_dtype="int8"))
    return checkpoint, root / "kv8", report


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The shipped model's trained weights (rebuilt as a PyTorch checkpoint), float32 weights, int8 KV cache."""
    root = tmp_path_factory.mktemp("kv8-trained")
    checkpoint = rebuild_checkpoint(DEFAULT_MODEL, root / "checkpoint")
    report = export_model(str(checkpoint), root / "kv8", plan=GraphPlan(kv_cache_dtype="int8"))
    return checkpoint, root / "kv8", report


def test_the_graph_keeps_int8_keys_and_values_with_per_channel_scales(kv8):
    checkpoint, folder, report = kv8
    graph = onnx.load(str(folder / "model.onnx")).graph
    nodes = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
    assert len(nodes) == 4  # 2 blocks, each with the rows' node and the prompt chunk's: both int8
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["k_quant_type"] == attrs["v_quant_type"] == b"PER_CHANNEL" and attrs["kv_cache_bit_width"] == 8
        scales = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer if t.name in node.input[12:14]}
        assert [s.shape for s in scales.values()] == [(4 * 16,), (4 * 16,)] and all((s > 0).all() for s in scales.values())
    kv_types = {i.type.tensor_type.elem_type for i in graph.input if "past_key_values" in i.name}
    assert kv_types == {onnx.TensorProto.INT8}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kv_cache_dtype"] == "int8" and manifest["weights"] == "float32" and report.graph["kv_cache_dtype"] == "int8"
    assert {t["dtype"] for t in manifest["io"]["inputs"] if t["name"].startswith("past")} == {"int8"}

    model = load(folder, provider="cpu")
    assert model.info.kv_dtype == "int8" and model.info.dtype == "float32"
    cache = new_cache(model.session, 2, 64)
    _, host = cache.buffers[0]
    assert host.dtype == np.int8 and host.nbytes == 2 * 4 * 64 * 16  # a quarter of float32's bytes
    cache.prefill(0, model.tokenizer.encode(PROMPTS[0]))
    assert np.abs(host[0].astype(np.int16)).max() > 60  # keys use the int8 range (calibrated scales, not saturating at 0)


@pytest.mark.slow  # exports the shipped model twice, held-out perplexity (~55 s)
def test_on_trained_weights_greedy_beams_scores_and_perplexity_match_float32(trained):
    checkpoint, folder, report = trained
    v = report.validation
    print(f"trained, int8 KV: max |logit diff| {v['max_abs_diff']:.3g} = {v['max_abs_diff'] / v['logit_scale']:.2%} of the scale")
    assert v["max_abs_diff"] < 0.01 * v["logit_scale"] and v["top1_agreement"] == 1.0
    model = load(folder, provider="cpu")
    for prompt in ("Once upon a time", "The secret of happiness is", "You will"):
        ids = model.tokenizer.encode(prompt)
        assert model.generate(prompt, max_new_tokens=20, do_sample=False).token_ids == hf_greedy(checkpoint, ids, 20)
        beams = model.generate(prompt, max_new_tokens=12, num_beams=3, do_sample=False)
        assert beams.token_ids == hf_greedy(checkpoint, ids, 12, num_beams=3)
    text = "You will find a new friend in an unexpected place. Good things come to those who wait."
    ids = model.tokenizer.encode(text)
    with torch.no_grad():
        logits = torch_model(checkpoint)(torch.tensor([ids])).logits[0]
    want = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
    (score,) = model.score([text])
    assert score.token_count == len(ids) - 1 and math.isclose(score.logprob, want, rel_tol=1e-3)
    texts = heldout_texts()
    recorded = json.loads((DEFAULT_MODEL / "training.json").read_text())["evaluation"]["heldout_perplexity"]
    assert perplexity(folder, texts)[0] == pytest.approx(recorded, rel=1e-3)  # measured: -0.001%


def test_on_random_weights_the_drift_is_bounded_and_batches_equal_rows_alone(kv8):
    checkpoint, folder, report = kv8
    v = report.validation
    print(f"random, int8 KV: max |logit diff| {v['max_abs_diff']:.3g} = {v['max_abs_diff'] / v['logit_scale']:.2%} of the scale, top-1 {v['top1_agreement']}")
    assert v["max_abs_diff"] < 0.05 * v["logit_scale"] and v["top1_agreement"] >= 0.9
    model = load(folder, provider="cpu")
    alone = [model.generate(p, max_new_tokens=24, do_sample=False).token_ids for p in PROMPTS]
    for prompt, ids in zip(PROMPTS, alone):
        assert ids[0] == hf_greedy(checkpoint, model.tokenizer.encode(prompt), 1)[0]
    batch = model.generate(list(PROMPTS), max_new_tokens=24, do_sample=False)  # rows of different lengths in one cache
    assert [c.token_ids for c in batch] == alone
    beams = model.generate(PROMPTS[0], max_new_tokens=12, num_beams=3, num_return_sequences=3, do_sample=False)
    assert len(beams.sequences) == 3 and beams.sequences[0].score >= beams.sequences[-1].score


def test_an_int8_cache_where_it_cannot_run_is_one_line(kv8, tmp_path):
    checkpoint, folder, _ = kv8
    for extra, message in (
        (["--float16", "--kv-cache-dtype", "int8"], "float16 KV cache"),
        (["--graph", "optimum", "--kv-cache-dtype", "int8"], "GroupQueryAttention graph"),
    ):
        result = run_cli("export", str(checkpoint), str(tmp_path / "out"), *extra)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    broken = tmp_path / "concat"
    shutil.copytree(folder, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "kv_cache": "concat"}))
    with pytest.raises(ModelLoadError, match="kv_cache_dtype 'int8' with kv_cache 'concat'"):
        load(broken, provider="cpu")
