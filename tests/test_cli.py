"""`gpt2onnx generate` and the command line's contract: streamed text, one JSON
object with --json, one-line errors with documented exit codes."""

from __future__ import annotations

import json

import pytest

from conftest import cli_json, run_cli


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
        (["generate", "hi"], 2, "the following arguments are required: --model"),
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
    from gpt2onnx.runtime.providers import cuda_problem

    result = run_cli("generate", "--model", model_dir, "--provider", "cuda", "--json", "--max-new-tokens", "2", "hi")
    if cuda_problem() is None:
        assert result.returncode == 0 and json.loads(result.stdout)["provider"] == "cuda"
    else:
        assert result.returncode == 1
        assert result.stderr.strip() == f"gpt2onnx: error: CUDA was asked for but can't run here: {cuda_problem()}"


def test_auto_provider_says_when_it_falls_back(model_dir):
    from gpt2onnx.runtime.providers import cuda_problem

    result = run_cli("generate", "--model", model_dir, "--json", "--max-new-tokens", "2", "hi")
    data = json.loads(result.stdout)
    if cuda_problem() is None:
        assert data["provider"] == "cuda"
    else:
        assert data["provider"] == "cpu" and data["provider_note"] == f"running on CPU: {cuda_problem()}"
        assert result.stderr.strip() == f"gpt2onnx: note: running on CPU: {cuda_problem()}"


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("gpt2onnx ")
    help_text = run_cli("--help").stdout
    assert "export" in help_text and "generate" in help_text
