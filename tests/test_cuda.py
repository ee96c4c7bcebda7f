"""The GPU path, on a real GPU: onnxruntime's CUDA provider runs float16 exports
with no silent fallback; their greedy and beam ids equal transformers' float16 on
the same GPU; the KV cache never crosses to the host (beam reorders and slot
moves run on the device); the slot engine and the server work there. A float32
export is refused on CUDA in one line: onnxruntime's GroupQueryAttention has no
float32 CUDA kernel (runtime/session.py's cuda_blocker).

Every test needs CUDA and skips without it, for the reason "no usable CUDA here:
<why>". benchmarks/gpu_check.sh runs them on the device machine.

GPT2ONNX_CUDA_REHEARSAL=cpu runs them here instead, on onnxruntime's CPU provider
and torch's CPU, with the cache's host view withheld so the device's code path
(row moves through the graph, nothing read back) runs: how they were rehearsed on
a machine without a GPU.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gpt2onnx.export.optimize import GraphPlan
from gpt2onnx.export.pipeline import export_model
from gpt2onnx.export.random_model import make_random_gpt2
from gpt2onnx.runtime import load
from gpt2onnx.runtime.kv_cache import new_cache
from gpt2onnx.runtime.providers import CPU_EP, CUDA_EP, cuda_problem

from conftest import run_staggered
from serve_helpers import Server

REHEARSAL = os.environ.get("GPT2ONNX_CUDA_REHEARSAL") == "cpu"
PROVIDER = "cpu" if REHEARSAL else "cuda"
pytestmark = pytest.mark.skipif(not REHEARSAL and cuda_problem() is not None, reason=f"no usable CUDA here: {cuda_problem()}")

PROMPTS = ["Hello, my dog is cute and", "The meaning of life is", "In 1492, Columbus sailed", "def fibonacci(n):"]
WEIGHTS = ("float16",)  # what CUDA runs (the float32 export is for the refusal)
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random GPT-2 with GPT-2's head size (64) and peaked next-token distributions, as a trained
    one has, so float16's rounding doesn't flip near-ties; exported in float32 and float16."""
    root = tmp_path_factory.mktemp("cuda")
    checkpoint = make_random_gpt2(root / "checkpoint", n_layer=2, n_head=2, n_embd=128, n_positions=256, seed=3, initializer_range=0.3, perturb=0.1)
    folders = {w: root / w for w in ("float32", "float16")}
    for weights, folder in folders.items():
        export_model(str(checkpoint), folder, plan=GraphPlan("gqa", weights))
    return checkpoint, folders


def oracle(checkpoint, weights: str):
    """transformers' model on the same device, in the export's precision (eager attention, the reference)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, attn_implementation="eager", torch_dtype=TORCH_DTYPES[weights])
    return model.to(PROVIDER).eval()


def torch_generate(model, ids: list[int], **settings):
    """transformers' generate on the device: (new ids per returned sequence, sequence scores or None)."""
    input_ids = torch.tensor([ids], device=PROVIDER)  # [1, prompt]
    with torch.no_grad():
        out = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=model.config.eos_token_id, return_dict_in_generate=True, output_scores=True, **settings
        )
    scores = getattr(out, "sequences_scores", None)
    return [row[len(ids) :].tolist() for row in out.sequences], None if scores is None else scores.float().cpu().tolist()


@pytest.fixture
def nothing_read_back(monkeypatch):
    """Fails the test if any OrtValue is copied to or from the host meanwhile (the caches' blocks are
    made before it starts). The logits are the one thing that comes back: bound to host memory."""
    for name in ("numpy", "update_inplace"):
        monkeypatch.setattr(ort.OrtValue, name, lambda *a, _name=name, **k: pytest.fail(f"OrtValue.{_name}: KV values crossed to the host"))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_the_provider_runs_the_model_with_no_fallback(exported, weights, device_cache):
    _, folders = exported
    model = load(folders[weights], provider=PROVIDER)
    assert model.provider == PROVIDER and model.provider_note is None
    assert model.session._session.get_providers()[0] == (CPU_EP if REHEARSAL else CUDA_EP)
    cache = new_cache(model.session, 2, 16)
    assert cache.block.device_name().lower() == PROVIDER and all(host is None for _, host in cache.buffers)


def test_a_float32_export_is_refused_on_cuda_in_one_line(exported, monkeypatch):
    """Refused before any session is made, so the rehearsal (where CUDA is made to look usable) runs
    the same code as the device."""
    from gpt2onnx.runtime import providers
    from gpt2onnx.runtime.errors import ProviderError

    if REHEARSAL:
        monkeypatch.setattr(providers, "cuda_problem", lambda: None)
    with pytest.raises(ProviderError, match="^CUDA was asked for but can't run here: onnxruntime's GroupQueryAttention runs on CUDA in float16 only"):
        load(exported[1]["float32"], provider="cuda")


@pytest.mark.parametrize("weights", WEIGHTS)
def test_greedy_ids_equal_transformers_on_the_same_device(exported, weights, device_cache, nothing_read_back):
    checkpoint, folders = exported
    model = load(folders[weights], provider=PROVIDER)
    theirs_model = oracle(checkpoint, weights)
    alone = []
    for prompt in PROMPTS:
        ours = model.generate(prompt, max_new_tokens=24, min_new_tokens=24, do_sample=False).token_ids
        theirs = torch_generate(theirs_model, model.tokenizer.encode(prompt), max_new_tokens=24, min_new_tokens=24, do_sample=False)[0][0]
        drift = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        assert ours == theirs, f"{weights}: {prompt!r} parts from transformers at new token {drift}"
        alone.append(ours)
    batch = model.generate(PROMPTS, max_new_tokens=24, min_new_tokens=24, do_sample=False)
    assert [c.token_ids for c in batch] == alone


def test_beam_reorders_stay_on_the_device_and_match_transformers(exported, device_cache, nothing_read_back):
    checkpoint, folders = exported
    model = load(folders["float16"], provider=PROVIDER)
    theirs_model = oracle(checkpoint, "float16")
    for settings in (dict(num_beams=3, max_new_tokens=12), dict(num_beams=4, num_return_sequences=2, max_new_tokens=10, length_penalty=0.5)):
        ours = model.generate(PROMPTS[1], do_sample=False, **settings)
        theirs, scores = torch_generate(theirs_model, model.tokenizer.encode(PROMPTS[1]), do_sample=False, **settings)
        assert [s.token_ids for s in ours.sequences] == [t[: len(s.token_ids)] for s, t in zip(ours.sequences, theirs)]
        # transformers sums float16 log-probabilities; ours are float32 ones of the float16 logits: 0.2% apart here.
        assert np.allclose([s.score for s in ours.sequences], scores, rtol=5e-3, atol=1e-3)
    assert sum(device_cache) > 0  # the reorders ran, through the graph on the device


@pytest.mark.parametrize("weights", WEIGHTS)
def test_the_slot_engine_runs_on_the_device(exported, weights, device_cache, nothing_read_back):
    _, folders = exported
    model = load(folders[weights], provider=PROVIDER)
    requests = [(PROMPTS[i % 4], dict(max_new_tokens=6 + 3 * i, do_sample=i % 2 == 1, seed=i)) for i in range(6)]
    expected = [model.generate(text, **settings).token_ids for text, settings in requests]
    engine = model.engine(slots=3)  # six requests through three slots: rows move as they join and leave
    searches = [model.generator(**settings) for _, settings in requests]
    run_staggered(engine, [(search, model.tokenizer.encode(text)) for search, (text, _) in zip(searches, requests)], every=2)
    assert [search.results()[0][0].token_ids for search in searches] == expected
    assert sum(device_cache) > 0  # compaction moved rows on the device


def test_the_server_serves_the_openai_client_from_the_device(exported):
    from openai import OpenAI

    _, folders = exported
    model = load(folders["float16"], provider=PROVIDER)
    server = Server("--model", str(folders["float16"]), "--provider", PROVIDER, "--slots", "4")
    try:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        model_id = client.models.list().data[0].id

        def complete(prompt: str) -> str:
            return client.completions.create(model=model_id, prompt=prompt, max_tokens=16, temperature=0).choices[0].text

        with ThreadPoolExecutor(8) as pool:  # more requests than slots: some queue
            texts = list(pool.map(complete, PROMPTS * 2))
        assert texts == [model.generate(p, max_new_tokens=16, do_sample=False).text for p in PROMPTS * 2]
    finally:
        assert server.stop() == 0
