"""Decoding parity with transformers on the same weights: beam search in several
settings, each logits processor that changes a greedy or beam result, batches of
prompts of different lengths, stop strings, logprobs and seeded sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpt2onnx.runtime.warpers import log_softmax

from conftest import torch_model

PROMPTS = ["Hello, my dog is cute and", "The meaning of life is", "In 1492, Columbus sailed"]


def hf_generate(checkpoint, ids: list[int], **kwargs):
    """transformers' generate on one prompt: (new ids per returned sequence, sequence scores or None)."""
    model = torch_model(checkpoint)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            pad_token_id=model.config.eos_token_id,
            return_dict_in_generate=True,
            output_scores=True,
            **kwargs,
        )
    scores = getattr(out, "sequences_scores", None)
    return [row[len(ids) :].tolist() for row in out.sequences], None if scores is None else scores.tolist()


def assert_same_ids(ours: list[int], theirs: list[int], pad: int = 50256):
    """HF pads a batch of sequences to one length: ours must be a prefix and the rest padding."""
    assert theirs[: len(ours)] == ours
    assert all(t == pad for t in theirs[len(ours) :])


def frequent_token(model, prompt: str) -> int:
    """A token greedy search emits early: used as eos to exercise finishing."""
    return model.generate(prompt, max_new_tokens=6).token_ids[2]


BEAM_SETTINGS = [
    dict(num_beams=3, max_new_tokens=12),
    dict(num_beams=4, max_new_tokens=10, num_return_sequences=3, length_penalty=0.5),
    dict(num_beams=3, max_new_tokens=10, early_stopping=True, length_penalty=2.0),
    dict(num_beams=2, max_new_tokens=8, early_stopping="never", length_penalty=-0.5),
    dict(num_beams=3, max_new_tokens=10, no_repeat_ngram_size=2, num_return_sequences=2),
    dict(num_beams=3, max_new_tokens=10, repetition_penalty=1.5, early_stopping="never"),
]


@pytest.mark.slow  # 6 settings x 3 shapes x 2 prompts x 2 eos against transformers (~65 s)
@pytest.mark.parametrize("settings", BEAM_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_beam_search_matches_transformers(exported, models, settings):
    model = models[exported.name]
    for prompt in PROMPTS[:2]:
        for eos in (None, frequent_token(model, prompt)):  # without and with beams finishing early
            extra = {} if eos is None else {"eos_token_id": eos}
            ids = model.tokenizer.encode(prompt)
            ours = model.generate(prompt, **settings, **extra)
            want_ids, want_scores = hf_generate(exported.checkpoint, ids, **settings, **extra)
            assert len(ours.sequences) == settings.get("num_return_sequences", 1)
            for sequence, want, score in zip(ours.sequences, want_ids, want_scores):
                assert_same_ids(sequence.token_ids, want, pad=50256)
                assert sequence.score == pytest.approx(score, abs=1e-4)


PROCESSOR_SETTINGS = [
    dict(repetition_penalty=1.3),
    dict(repetition_penalty=0.7),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=1),
    dict(min_new_tokens=8),
]


@pytest.mark.parametrize("settings", PROCESSOR_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_greedy_processors_match_transformers_and_change_the_result(exported, models, settings):
    model = models[exported.name]
    prompt = PROMPTS[0]
    ids = model.tokenizer.encode(prompt)
    # min_new_tokens matters only with an eos that comes early: use a token greedy search emits.
    eos = frequent_token(model, prompt) if "min_new_tokens" in settings else 50256
    plain = model.generate(prompt, max_new_tokens=16, eos_token_id=eos).token_ids
    ours = model.generate(prompt, max_new_tokens=16, eos_token_id=eos, **settings).token_ids
    (want,), _ = hf_generate(exported.checkpoint, ids, max_new_tokens=16, eos_token_id=eos, do_sample=False, **settings)
    assert_same_ids(ours, want)
    assert ours != plain  # the setting matters on this prompt


def test_bad_words_match_transformers(exported, models):
    model = models[exported.name]
    prompt = PROMPTS[1]
    ids = model.tokenizer.encode(prompt)
    plain = model.generate(prompt, max_new_tokens=12).token_ids
    bad = [[plain[0]], [plain[1], plain[2]], [50256]]  # one token, a two-token sequence, and eos (ignored)
    ours = model.generate(prompt, max_new_tokens=12, bad_words_ids=bad).token_ids
    (want,), _ = hf_generate(exported.checkpoint, ids, max_new_tokens=12, bad_words_ids=bad, do_sample=False)
    assert_same_ids(ours, want)
    assert plain[0] not in ours and ours != plain


def test_sequence_bias_matches_transformers(exported, models):
    """HF's sequence_bias (what the server's logit_bias becomes): a one-token bias always applies, a
    longer sequence's bias only after the rest of it."""
    model = models[exported.name]
    prompt = PROMPTS[1]
    ids = model.tokenizer.encode(prompt)
    plain = model.generate(prompt, max_new_tokens=12).token_ids
    bias = [[[plain[0]], -50.0], [[plain[1], plain[2]], -50.0], [[464], 4.0]]
    ours = model.generate(prompt, max_new_tokens=12, sequence_bias=bias).token_ids
    hf_bias = {tuple(seq): value for seq, value in bias}
    (want,), _ = hf_generate(exported.checkpoint, ids, max_new_tokens=12, sequence_bias=hf_bias, do_sample=False)
    assert_same_ids(ours, want)
    assert plain[0] not in ours and ours != plain


def test_presence_and_frequency_penalties_follow_openai(models):
    model = models["tiny"]
    ids = model.tokenizer.encode(PROMPTS[0])
    plain = model.generate(PROMPTS[0], max_new_tokens=20).token_ids
    assert len(set(plain)) < 10  # this random model repeats itself
    penalised = model.generate(PROMPTS[0], max_new_tokens=20, frequency_penalty=2.0).token_ids
    assert len(set(penalised)) > len(set(plain))
    # Step by step: the penalised choice is the argmax of logits - presence*[seen] - frequency*count.
    generator = model.generator(max_new_tokens=6, presence_penalty=0.5, frequency_penalty=1.5)
    generator.append_tokens(ids)
    while not generator.is_done():  # generate_next_token's two halves: run the model, then choose
        made = generator.sequences[0, len(ids) :]
        generator.state.step()
        logits = generator.state.logits[0].copy()
        token = int(generator.advance()[0])
        counts = np.bincount(made, minlength=logits.shape[-1]).astype(np.float32)
        assert token == int(np.argmax(logits - 0.5 * (counts > 0) - 1.5 * counts))


@pytest.mark.slow  # batches and their prompts alone against transformers (~24 s)
@pytest.mark.parametrize("settings", [dict(), dict(num_beams=3), dict(repetition_penalty=1.4, no_repeat_ngram_size=3)], ids=str)
def test_a_batch_equals_each_prompt_alone_and_transformers(exported, models, settings):
    model = models[exported.name]
    prompts = ["Hi", "A much longer prompt, with several more tokens in it", "Middle length prompt"]
    batched = model.generate(prompts, max_new_tokens=10, **settings)
    for prompt, completion in zip(prompts, batched):
        alone = model.generate(prompt, max_new_tokens=10, **settings)
        assert completion.token_ids == alone.token_ids
        assert completion.prompt_token_ids == model.tokenizer.encode(prompt)
        (want, *_), _ = hf_generate(exported.checkpoint, completion.prompt_token_ids, max_new_tokens=10, do_sample=False, **settings)
        assert_same_ids(completion.token_ids, want)


def test_stop_strings_cut_the_text_exactly(models):
    model = models["odd_heads"]
    full = model.generate(PROMPTS[2], max_new_tokens=30)
    cut = len(full.text) // 2
    stop = full.text[cut : cut + 4]
    first = full.text.find(stop)
    stopped = model.generate(PROMPTS[2], max_new_tokens=30, stop_strings=[stop, "never appears \u2603"])
    assert stopped.text == full.text[:first]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == full.token_ids[: len(stopped.token_ids)]
    assert model.tokenizer.decode(stopped.token_ids).startswith(full.text[: first + len(stop)])
    stream = model.stream(PROMPTS[2], max_new_tokens=30, stop_strings=[stop])
    assert "".join(stream) == stopped.text and stream.completion.text == stopped.text


def test_logprobs_are_the_models_own(exported, models):
    model = models[exported.name]
    completion = model.generate(PROMPTS[0], max_new_tokens=6, logprobs=5)
    ids = completion.prompt_token_ids + completion.token_ids
    with torch.no_grad():
        logits = torch_model(exported.checkpoint)(torch.tensor([ids])).logits[0].numpy()
    logp = log_softmax(logits[len(completion.prompt_token_ids) - 1 : -1])  # [new, vocab]
    assert len(completion.sequences[0].logprobs) == len(completion.token_ids)
    for step, entry in enumerate(completion.sequences[0].logprobs):
        assert entry.token_id == completion.token_ids[step]
        assert entry.logprob == pytest.approx(float(logp[step, entry.token_id]), abs=1e-4)
        top_ids = [t for t, _ in entry.top]
        assert top_ids == list(np.argsort(-logp[step], kind="stable")[:5])
        assert top_ids[0] == entry.token_id  # greedy picks the most likely
        assert [lp for _, lp in entry.top] == sorted((lp for _, lp in entry.top), reverse=True)


def test_beam_logprobs_are_the_models_own_and_change_nothing(exported, models):
    """Each returned beam's tokens with their log-probabilities under the model (raw logits,
    before the processors) and top alternatives, as greedy search reports them."""
    model = models[exported.name]
    settings = dict(num_beams=3, num_return_sequences=2, max_new_tokens=6, no_repeat_ngram_size=2)
    completion = model.generate(PROMPTS[0], logprobs=4, **settings)
    plain = model.generate(PROMPTS[0], **settings)
    assert [(s.token_ids, s.score) for s in completion.sequences] == [(s.token_ids, s.score) for s in plain.sequences]
    for sequence in completion.sequences:
        ids = completion.prompt_token_ids + sequence.token_ids
        with torch.no_grad():
            logits = torch_model(exported.checkpoint)(torch.tensor([ids])).logits[0].numpy()
        logp = log_softmax(logits[len(completion.prompt_token_ids) - 1 : -1])  # [new, vocab]
        assert [entry.token_id for entry in sequence.logprobs] == sequence.token_ids
        for step, entry in enumerate(sequence.logprobs):
            assert entry.logprob == pytest.approx(float(logp[step, entry.token_id]), abs=1e-4)
            assert [t for t, _ in entry.top] == list(np.argsort(-logp[step], kind="stable")[:4])
            assert [lp for _, lp in entry.top] == pytest.approx(np.sort(logp[step])[::-1][:4].tolist(), abs=1e-4)


def test_seeded_sampling_is_reproducible(models):
    model = models["tiny"]
    settings = dict(do_sample=True, max_new_tokens=15, temperature=0.8, top_k=40, top_p=0.95)
    first = model.generate(PROMPTS[0], seed=123, **settings).token_ids
    assert model.generate(PROMPTS[0], seed=123, **settings).token_ids == first
    assert model.generate(PROMPTS[0], seed=124, **settings).token_ids != first
    streamed = model.stream(PROMPTS[0], seed=123, **settings)
    text = "".join(streamed)
    assert streamed.completion.token_ids == first and text == streamed.completion.text
    samples = model.generate(PROMPTS[0], seed=5, num_return_sequences=3, **settings)
    assert len(samples.sequences) == 3 and len({tuple(s.token_ids) for s in samples.sequences}) == 3
