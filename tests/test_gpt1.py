"""GPT-1 (openai-gpt, OpenAIGPTLMHeadModel) exported and run like GPT-2, against transformers.

transformers' GPT-1 has no KV cache: its oracle is a full forward pass over the
whole sequence at every step, and OpenAIGPTLMHeadModel.generate. The checkpoint is
random with a small BPE trained here in GPT-1's format (lowercasing, `</w>` word
ends, no bos/eos), which transformers' OpenAIGPTTokenizerFast loads.
"""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest
import torch
from conftest import hf_greedy, run_cli, torch_model
from serve_helpers import Server
from test_export import assert_one_line_error

from gpt2onnx.runtime import UsageError, load
from gpt2onnx.runtime.warpers import log_softmax

PROMPTS = ["The Quick brown fox jumps over", "Hello, World! Numbers like 1492 and"]


@pytest.fixture(scope="module")
def model(gpt1):
    return load(gpt1.onnx_dir, provider="cpu")


def full_forward_logits(checkpoint, ids: list[int]) -> np.ndarray:
    """transformers' logits [seq, vocab] of one full forward pass over `ids`."""
    with torch.no_grad():
        return torch_model(checkpoint)(torch.tensor([ids])).logits[0].numpy()


def test_export_records_gpt1_and_validates(gpt1, model):
    manifest = json.loads((gpt1.onnx_dir / "manifest.json").read_text())
    assert manifest["model"]["architecture"] == "OpenAIGPTLMHeadModel" and manifest["model"]["model_type"] == "openai-gpt"
    assert manifest["model"]["n_positions"] == 512 and manifest["model"]["eos_token_id"] is None
    assert gpt1.report.graph["kv_cache"] == "shared"  # gpt2onnx's graph, KV cache and all
    assert gpt1.report.graph["architecture"] == "OpenAIGPTLMHeadModel"
    assert gpt1.report.validation["max_abs_diff"] < 1e-4
    assert model.info.task == "text-generation" and model.generation_config.eos_token_ids == ()


def test_tokenizer_is_gpt1s_lowercasing_bpe(gpt1, model):
    from transformers import OpenAIGPTTokenizerFast

    theirs = OpenAIGPTTokenizerFast.from_pretrained(gpt1.checkpoint)
    for text in PROMPTS:
        assert model.tokenizer.encode(text) == theirs(text).input_ids
        assert model.tokenizer.decode(model.tokenizer.encode(text)) == theirs.decode(theirs(text).input_ids, skip_special_tokens=True)
    assert theirs.unk_token_id not in model.tokenizer.encode(PROMPTS[0] + " " + PROMPTS[1])
    assert model.tokenizer.decode(model.tokenizer.encode("Hello World")) == "hello world"


def test_cached_steps_equal_a_full_forward_pass_at_every_step(gpt1, model):
    from gpt2onnx.runtime.kv_cache import stepped_logits

    ids = model.tokenizer.encode(PROMPTS[0])
    ids = ids + model.generate(PROMPTS[0], max_new_tokens=20).token_ids
    ours = stepped_logits(model.session, ids, prefill=3)  # 3 tokens, then one cached step per token
    assert np.abs(ours - full_forward_logits(gpt1.checkpoint, ids)).max() < 1e-4


def test_greedy_equals_openai_gpt_generate(gpt1, model):
    for prompt in PROMPTS:
        got = model.generate(prompt, max_new_tokens=24).token_ids
        want = hf_greedy(gpt1.checkpoint, model.tokenizer.encode(prompt), 24)
        assert got == want and len(set(got)) > 3  # a real continuation, not one token repeated


def test_beams_equal_openai_gpt_generate(gpt1, model):
    settings = dict(num_beams=3, num_return_sequences=2, max_new_tokens=10, length_penalty=0.5)
    ids = model.tokenizer.encode(PROMPTS[1])
    ours = model.generate(PROMPTS[1], **settings)
    with torch.no_grad():
        out = torch_model(gpt1.checkpoint).generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), do_sample=False,
            return_dict_in_generate=True, output_scores=True, **settings,
        )
    for sequence, row, score in zip(ours.sequences, out.sequences, out.sequences_scores):
        assert sequence.token_ids == row[len(ids):].tolist()
        assert sequence.score == pytest.approx(float(score), abs=1e-4)


def test_a_batch_equals_each_prompt_alone(model):
    batch = model.generate(PROMPTS, max_new_tokens=12)
    assert [c.token_ids for c in batch] == [model.generate(p, max_new_tokens=12).token_ids for p in PROMPTS]


def test_logprobs_and_scores_are_transformers(gpt1, model):
    completion = model.generate(PROMPTS[0], max_new_tokens=8, logprobs=3)
    ids = completion.prompt_token_ids + completion.token_ids
    logp = log_softmax(full_forward_logits(gpt1.checkpoint, ids))  # [seq, vocab]
    start = len(completion.prompt_token_ids)
    for step, entry in enumerate(completion.sequences[0].logprobs):
        assert entry.logprob == pytest.approx(float(logp[start - 1 + step, entry.token_id]), abs=1e-4)
        assert [t for t, _ in entry.top] == list(np.argsort(-logp[start - 1 + step], kind="stable")[:3])
    text = PROMPTS[1] + " and more words"
    ids = model.tokenizer.encode(text)
    logp = log_softmax(full_forward_logits(gpt1.checkpoint, ids))
    (score,) = model.score([text])
    assert score.logprob == pytest.approx(float(sum(logp[i - 1, ids[i]] for i in range(1, len(ids)))), abs=1e-3)


def test_streamed_text_continues_the_prompt_with_its_spaces(model):
    """GPT-1's BPE puts word ends on tokens (`</w>`): the new text starts with the space after
    the prompt's last word, so prompt + text is the whole sequence's text."""
    stream = model.stream(PROMPTS[0], max_new_tokens=16)
    text = "".join(stream)
    prompt_ids, ids = stream.completion.prompt_token_ids, stream.completion.token_ids
    assert text == stream.completion.text and text.startswith(" ")
    assert model.tokenizer.decode(prompt_ids) + text == model.tokenizer.decode(prompt_ids + ids)


def test_no_bos_token_means_an_empty_prompt_is_refused(model):
    with pytest.raises(UsageError, match="no bos token"):
        model.generate("", max_new_tokens=4)


def test_cli_generate_and_the_export_refusals(gpt1, model, tmp_path):
    done = run_cli("generate", "--model", str(gpt1.onnx_dir), "--json", "--max-new-tokens", "8", PROMPTS[0])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["sequences"][0]["token_ids"] == model.generate(PROMPTS[0], max_new_tokens=8).token_ids
    refused = run_cli("export", str(gpt1.checkpoint), str(tmp_path / "out"), "--graph", "optimum")
    assert_one_line_error(refused, 2, "Optimum has no ONNX exporter for GPT-1")
    refused = run_cli("export", str(gpt1.checkpoint), str(tmp_path / "out"), "--kv-cache-dtype", "int8")
    assert_one_line_error(refused, 2, "GPT-1 exports keep a float32 cache")


def test_int8_export_of_gpt1(gpt1, tmp_path):
    from gpt2onnx.export.optimize import GraphPlan
    from gpt2onnx.export.pipeline import export_model

    report = export_model(str(gpt1.checkpoint), tmp_path / "int8", plan=GraphPlan(weights="int8"))
    assert report.graph["weights"] == "int8" and report.validation["top1_agreement"] >= 0.9
    assert load(tmp_path / "int8", provider="cpu").generate(PROMPTS[0], max_new_tokens=4).finish_reason == "length"


def test_served_over_openais_api(gpt1, model):
    server = Server("--model", str(gpt1.onnx_dir), "--threads", "1")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        got = client.completions.create(model=client.models.list().data[0].id, prompt=PROMPTS[1], max_tokens=12, temperature=0)
        assert got.choices[0].text == model.generate(PROMPTS[1], max_new_tokens=12).text
        assert got.choices[0].finish_reason == "length"
    finally:
        assert server.stop() == 0
