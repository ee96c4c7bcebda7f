"""The generation loop: stopping (eos, token budget, context), empty prompts,
HF's max_length / max_new_tokens semantics, streaming and the step API."""

from __future__ import annotations

import pytest

from gpt2onnx.runtime import GenerationConfig, UsageError, load

from conftest import hf_greedy


@pytest.fixture(scope="module")
def tiny(exports):
    return exports["tiny"], load(exports["tiny"].onnx_dir, provider="cpu")


@pytest.fixture(scope="module")
def short(exports):
    """n_positions = 64."""
    return exports["deep_short"], load(exports["deep_short"].onnx_dir, provider="cpu")


def test_stops_at_eos_like_transformers(tiny):
    exported, model = tiny
    prompt = "We stop at the end of text"
    free = model.generate(prompt, max_new_tokens=16).token_ids
    eos = free[5]
    stop_at = free.index(eos)
    completion = model.generate(prompt, max_new_tokens=16, eos_token_id=eos)
    assert completion.finish_reason == "eos"
    assert completion.token_ids == free[: stop_at + 1]
    ids = model.tokenizer.encode(prompt)
    assert completion.token_ids == hf_greedy(exported.checkpoint, ids, 16, eos_token_id=eos)


def test_stops_at_max_new_tokens(tiny):
    _, model = tiny
    completion = model.generate("Count the tokens", max_new_tokens=7)
    assert len(completion.token_ids) == 7
    assert completion.finish_reason == "length"
    assert completion.timing.new_tokens == 7


def test_max_length_counts_the_prompt_like_transformers(tiny):
    _, model = tiny
    ids = model.tokenizer.encode("Four tokens here?")
    assert len(model.generate("Four tokens here?", max_length=len(ids) + 3).token_ids) == 3
    # HF's default: max_length=20 in all when max_new_tokens is unset.
    assert len(model.generate("Four tokens here?").token_ids) == 20 - len(ids)
    assert model.generate("Four tokens here?", max_new_tokens=0).token_ids == []


def test_empty_prompt_starts_from_bos_like_transformers(tiny):
    exported, model = tiny
    completion = model.generate("", max_new_tokens=10)
    assert completion.prompt_token_ids == [50256]
    assert completion.token_ids == hf_greedy(exported.checkpoint, [50256], 10)


def test_context_is_capped_at_n_positions(short):
    exported, model = short
    n = model.info.n_positions
    words = " ".join(["word"] * 200)
    ids = model.tokenizer.encode(words)
    # A prompt that fits leaves room for n - len + 1 tokens: the last one is chosen but never fed.
    prompt = model.tokenizer.decode(ids[: n - 4])
    completion = model.generate(prompt, max_new_tokens=20)
    assert completion.finish_reason == "context"
    assert completion.token_ids == hf_greedy(exported.checkpoint, ids[: n - 4], 5)
    full = model.generate(model.tokenizer.decode(ids[:n]), max_new_tokens=20)
    assert (len(full.token_ids), full.finish_reason) == (1, "context")
    with pytest.raises(UsageError, match=rf"prompt is {n + 1} tokens but the model's context \(n_positions\) is {n}"):
        model.generate(model.tokenizer.decode(ids[: n + 1]))


def test_stream_deltas_join_to_the_final_text(tiny):
    _, model = tiny
    stream = model.stream("Stream me", max_new_tokens=30)
    deltas = list(stream)
    completion = stream.completion
    assert len(deltas) > 1
    assert "".join(deltas) == completion.text == model.tokenizer.decode(completion.token_ids)
    assert completion.text == model.generate("Stream me", max_new_tokens=30).text


def test_stream_close_cancels_and_keeps_what_was_made(tiny):
    _, model = tiny
    stream = model.stream("Cancel me", max_new_tokens=50)
    first = next(stream)
    stream.close()
    assert stream.completion.finish_reason == "cancelled"
    assert 1 <= len(stream.completion.token_ids) < 50
    assert stream.completion.text.startswith(first)
    assert list(stream) == []


def test_step_api_batch_of_one_matches_generate(tiny):
    _, model = tiny
    ids = model.tokenizer.encode("Step by step")
    generator = model.generator(max_new_tokens=12)
    generator.append_tokens(ids)
    steps = []
    while not generator.is_done():
        steps.append(int(generator.generate_next_token()[0]))
        assert int(generator.get_next_tokens()[0]) == steps[-1]
    assert steps == model.generate("Step by step", max_new_tokens=12).token_ids
    assert generator.timing.prefill_s > 0 and generator.timing.decode_s > 0


def test_generation_config_uses_hf_names_and_defaults(tiny):
    _, model = tiny
    config = model.generation_config
    assert (config.max_length, config.max_new_tokens, config.do_sample, config.num_beams) == (20, None, False, 1)
    assert (config.top_k, config.top_p, config.temperature) == (50, 1.0, 1.0)
    assert config.eos_token_id == 50256 and config.bos_token_id == 50256
    assert GenerationConfig.from_dict({"max_new_tokens": 5, "transformers_version": "x"}).max_new_tokens == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"temperature": -1.0}, r"temperature must be in \(0, inf\]"),
        ({"temperature": float("nan")}, r"temperature must be in \(0, inf\]"),
        ({"top_k": -5}, "top_k must be an integer >= 0"),
        ({"min_p": 2.0}, r"min_p must be in \[0, 1\]"),
        ({"typical_p": 0.0}, r"typical_p must be in \(0, 1\]"),
        ({"repetition_penalty": 0.0}, r"repetition_penalty must be in \(0, inf\]"),
        ({"presence_penalty": 3.0}, r"presence_penalty must be in \[-2, 2\]"),
        ({"num_beams": 0}, "num_beams must be an integer >= 1"),
        ({"num_return_sequences": 2}, "num_return_sequences > 1 needs do_sample=True or num_beams > 1"),
        ({"num_beams": 2, "num_return_sequences": 3}, r"num_return_sequences \(3\) must be <= num_beams \(2\)"),
        ({"early_stopping": "sometimes"}, "early_stopping must be True, False or 'never'"),
        ({"bad_words_ids": [[]]}, "bad_words_ids must be a list of non-empty lists of token ids"),
        ({"stop_strings": [""]}, "stop_strings must be non-empty strings"),
        ({"max_new_token": 5}, "unknown generation setting 'max_new_token'"),
    ],
)
def test_bad_settings_are_refused_in_one_line(tiny, kwargs, message):
    _, model = tiny
    with pytest.raises(UsageError, match=message) as info:
        model.generate("x", **kwargs)
    assert "\n" not in str(info.value)
