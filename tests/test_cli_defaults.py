"""`gpt2onnx generate` checks its flags against the model's own generation defaults
(its generation_config.json), not Hugging Face's, and still before the slow load.

The shipped model samples by default (do_sample=true), so flags that need sampling
work there without --do-sample, as they do through the API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gpt2onnx.runtime import DEFAULT_MODEL, load

from conftest import cli_json, run_cli


@pytest.fixture(scope="module")
def shipped():
    return load(provider="cpu")


def test_num_return_sequences_samples_with_the_shipped_models_defaults(shipped):
    assert shipped.generation_config.do_sample  # what makes the flag valid without --do-sample
    data = cli_json("generate", "--provider", "cpu", "--json", "--max-new-tokens", "5", "--seed", "5", "--num-return-sequences", "3", "Hi")
    got = [s["token_ids"] for s in data["results"][0]["sequences"]]
    want = shipped.generate("Hi", max_new_tokens=5, num_return_sequences=3, seed=5)
    assert len(got) == 3 and got == [s.token_ids for s in want.sequences]
    # Without --json: the three completions, printed one after another.
    plain = run_cli("generate", "--provider", "cpu", "--max-new-tokens", "5", "--seed", "5", "--num-return-sequences", "3", "Hi")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.count("Hi") >= 3


def test_num_beams_runs_on_the_shipped_model(shipped):
    """Beam sampling (the shipped model samples): the command does what model.generate does."""
    data = cli_json("generate", "--provider", "cpu", "--json", "--max-new-tokens", "5", "--seed", "3", "--num-beams", "4", "Hi")
    (sequence,) = data["results"][0]["sequences"]
    want = shipped.generate("Hi", max_new_tokens=5, num_beams=4, seed=3)
    assert sequence["token_ids"] == want.token_ids and sequence["score"] == pytest.approx(want.sequences[0].score)


@pytest.fixture(scope="module")
def unloadable(tmp_path_factory) -> Path:
    """A copy of the shipped model whose generation_config.json does beam search with 2 beams:
    its manifest check fails (the file's hash changed), so any load of it fails."""
    folder = Path(shutil.copytree(DEFAULT_MODEL, tmp_path_factory.mktemp("defaults") / "model"))
    path = folder / "generation_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"do_sample": False, "num_beams": 2}))
    return folder


@pytest.mark.parametrize(
    "flags, message",
    [
        # Bad only against this model's defaults (2 beams); Hugging Face's (1 beam, greedy) would say something else.
        (["--num-return-sequences", "3"], "num_return_sequences (3) must be <= num_beams (2)"),
        (["--top-p", "2"], "top_p must be in (0, 1], got 2.0"),
    ],
)
def test_a_bad_flag_fails_in_one_line_before_the_model_loads(unloadable, flags, message):
    result = run_cli("generate", "--model", str(unloadable), "--provider", "cpu", *flags, "Hi")
    # The load would fail on the changed file's hash: the flag's message shows it was never reached.
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""


def test_the_unloadable_copy_really_fails_to_load(unloadable):
    result = run_cli("generate", "--model", str(unloadable), "--provider", "cpu", "Hi")
    assert result.returncode == 2 and "re-export the model" in result.stderr, result.stderr


def test_settings_are_validated_once_not_per_prompt(monkeypatch, capsys):
    """Before, each prompt validated its settings again (three times per prompt); now the flags are
    checked once against the model's defaults, and the prompts reuse that config."""
    from gpt2onnx.cli import main
    from gpt2onnx.runtime import GenerationConfig

    calls = []
    real = GenerationConfig._validate
    monkeypatch.setattr(GenerationConfig, "_validate", lambda self: calls.append(1) or real(self))

    def validations(prompts: list[str]) -> int:
        calls.clear()
        assert main(["generate", "--provider", "cpu", "--max-new-tokens", "2", "--seed", "1", "--json", *prompts]) == 0
        return len(calls)

    one, four = validations(["a"]), validations(["a", "b", "c", "d"])
    capsys.readouterr()
    assert four == one  # nothing per prompt
