"""`gpt2onnx generate` and the command line's contract: streamed text, one JSON
object with --json, one-line errors with documented exit codes."""

from __future__ import annotations

import json

import pytest

from conftest import cli_json, cuda_problem_for, run_cli


@pytest.fixture(scope="module")
def model_dir(exports):
    return str(exports["tiny"].onnx_dir)


def test_streams_prompt_and_completion_to_stdout(model_dir):
    as_json = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "12", "Hello there")
    streamed = run_cli("generate", "--model", model_dir, "--max-new-tokens", "12", "Hello there")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "Hello there" + as_json["results"][0]["sequences"][0]["text"] + "\n"


def test_json_is_one_object_with_the_contract_fields(model_dir):
    result = run_cli("generate", "--model", model_dir, "--json", "--max-new-tokens", "3", "a", "b c", "--provider", "cpu")
    assert result.returncode == 0
    data = json.loads(result.stdout)  # exactly one JSON document
    assert data["provider"] == "cpu"
    assert [r["prompt"] for r in data["results"]] == ["a", "b c"]
    for r in data["results"]:
        (sequence,) = r["sequences"]
        assert len(sequence["token_ids"]) == 3 and isinstance(sequence["text"], str)
    timing = data["timing"]
    assert timing["new_tokens"] == 6
    assert all(isinstance(timing[k], float) and timing[k] >= 0 for k in ("load_s", "prefill_s", "decode_s"))


def test_reads_a_prompt_from_stdin(model_dir):
    from_stdin = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "4", "-", stdin="Hello there")
    from_arg = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "4", "Hello there")
    assert from_stdin["results"][0]["sequences"] == from_arg["results"][0]["sequences"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["generate", "--model", "/no/such/model", "hi"], 2, "no such model folder: /no/such/model"),
        (["generate", "--max-new-tokens", "5"], 2, "the following arguments are required: PROMPT"),
        (["generate", "--model", "{model}", "--max-new-tokens", "-3", "hi"], 2, "max_new_tokens must be an integer >= 0"),
        (["generate", "--model", "{model}", "--max-new-tokens", "ten", "hi"], 2, "invalid int value: 'ten'"),
        (["generate", "--model", "{model}", "--provider", "tpu", "hi"], 2, "invalid choice: 'tpu'"),
        (["generate", "--model", "{model}", "--provider", "cpu", "--max-new-tokens", "1", "word " * 1100], 2, "but the model's context (n_positions) is 1024"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        ([], 2, "the following arguments are required: COMMAND"),
    ],
)
def test_bad_usage_gets_one_line_and_exit_2(model_dir, args, code, message):
    result = run_cli(*[a.replace("{model}", model_dir) for a in args])
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""


def test_cuda_provider_without_cuda_is_a_clear_failure(model_dir):
    problem = cuda_problem_for(model_dir)  # this float32 export's, where the machine has CUDA
    result = run_cli("generate", "--model", model_dir, "--provider", "cuda", "--json", "--max-new-tokens", "2", "hi")
    if problem is None:
        assert result.returncode == 0 and json.loads(result.stdout)["provider"] == "cuda"
    else:
        assert result.returncode == 1
        assert result.stderr.strip() == f"gpt2onnx: error: CUDA was asked for but can't run here: {problem}"


def test_auto_provider_says_when_it_falls_back(model_dir):
    problem = cuda_problem_for(model_dir)
    result = run_cli("generate", "--model", model_dir, "--json", "--max-new-tokens", "2", "hi")
    data = json.loads(result.stdout)
    if problem is None:
        assert data["provider"] == "cuda"
    else:
        assert data["provider"] == "cpu" and data["provider_note"] == f"running on CPU: {problem}"
        assert result.stderr.strip() == f"gpt2onnx: note: running on CPU: {problem}"


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("gpt2onnx ")
    help_text = run_cli("--help").stdout
    assert "export" in help_text and "generate" in help_text


def test_generation_flags_carry_hf_names_to_the_api(model_dir):
    from gpt2onnx.runtime import load

    model = load(model_dir, provider="cpu")
    beams = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "8", "--num-beams", "3",
                     "--num-return-sequences", "2", "--length-penalty", "0.5", "--early-stopping", "never", "Hello there")
    want = model.generate("Hello there", max_new_tokens=8, num_beams=3, num_return_sequences=2, length_penalty=0.5, early_stopping="never")
    got = beams["results"][0]["sequences"]
    assert [s["token_ids"] for s in got] == [s.token_ids for s in want.sequences]
    assert [s["score"] for s in got] == pytest.approx([s.score for s in want.sequences])
    flags = ["--do-sample", "--seed", "7", "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.01",
             "--typical-p", "0.99", "--repetition-penalty", "1.1", "--presence-penalty", "0.1", "--frequency-penalty", "0.1",
             "--no-repeat-ngram-size", "3", "--min-new-tokens", "2", "--max-new-tokens", "12"]
    sampled = cli_json("generate", "--model", model_dir, "--json", *flags, "Hello there")
    want = model.generate("Hello there", seed=7, do_sample=True, temperature=0.9, top_k=20, top_p=0.9, min_p=0.01, typical_p=0.99,
                          repetition_penalty=1.1, presence_penalty=0.1, frequency_penalty=0.1, no_repeat_ngram_size=3,
                          min_new_tokens=2, max_new_tokens=12)
    assert sampled["results"][0]["sequences"][0]["token_ids"] == want.token_ids
    again = cli_json("generate", "--model", model_dir, "--json", *flags, "Hello there")
    assert again["results"] == sampled["results"]


def test_logprobs_stop_and_bad_words_in_json(model_dir):
    data = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "4", "--logprobs", "3", "Hello there")
    (sequence,) = data["results"][0]["sequences"]
    assert len(sequence["logprobs"]) == 4
    for token_id, entry in zip(sequence["token_ids"], sequence["logprobs"]):
        assert entry["token_id"] == token_id and entry["logprob"] <= 0 and isinstance(entry["text"], str)
        assert len(entry["top"]) == 3 and entry["top"][0]["token_id"] == token_id  # greedy takes the top choice
        assert {"token_id", "text", "logprob"} == set(entry["top"][0])
    text = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "20", "Hello there")["results"][0]["sequences"][0]["text"]
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "20", "--stop", stop, "Hello there")
    (sequence,) = stopped["results"][0]["sequences"]
    assert sequence["finish_reason"] == "stop" and sequence["text"] == text[: text.find(stop)]
    first_word = text.split()[0]
    banned = cli_json("generate", "--model", model_dir, "--json", "--max-new-tokens", "20", "--bad-words", first_word, "Hello there")
    assert first_word not in banned["results"][0]["sequences"][0]["text"].split()


def test_score_command_matches_the_api(model_dir):
    from gpt2onnx.runtime import load

    texts = ["The quick brown fox jumps over the lazy dog.", "Hello there, general Kenobi"]
    data = cli_json("score", "--model", model_dir, "--json", *texts)
    want = load(model_dir, provider="cpu").score(texts)
    for got, score in zip(data["results"], want):
        assert got["text"] == score.text and got["token_count"] == score.token_count
        assert got["logprob"] == pytest.approx(score.logprob) and got["perplexity"] == pytest.approx(score.perplexity)
    plain = run_cli("score", "--model", model_dir, "--provider", "cpu", *texts)
    assert plain.returncode == 0 and plain.stdout.count("perplexity") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--top-p", "0", "hi"], r"top_p must be in (0, 1], got 0.0"),
        (["generate", "--temperature", "-1", "hi"], r"temperature must be in (0, inf], got -1.0"),
        (["generate", "--num-return-sequences", "3", "hi"], "num_return_sequences > 1 needs do_sample=True or num_beams > 1"),
        (["generate", "--num-beams", "2", "--num-return-sequences", "3", "hi"], "num_return_sequences (3) must be <= num_beams (2)"),
        (["generate", "--early-stopping", "maybe", "hi"], "invalid choice: 'maybe'"),
        (["generate", "--logprobs", "-1", "hi"], "logprobs must be an integer >= 0"),
        (["score", "--provider", "cpu", "--stride", "0", "some text here"], "stride must be a whole number from 1"),
        (["score", "--provider", "cpu", "a"], "scoring needs at least two tokens"),
    ],
)
def test_settings_that_make_no_sense_are_refused(model_dir, args, message):
    result = run_cli(args[0], "--model", model_dir, *args[1:])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
