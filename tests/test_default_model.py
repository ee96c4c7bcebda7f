"""The shipped default model (runtime/default_model/): it is what `load()` and a
`gpt2onnx generate` without --model run, it passes its manifest check, it is the
model its training.json describes, and it beats a unigram baseline on held-out
fortune cookies it never saw (tests/data/default_model/, written by
training/train_default_model.py).

The baseline is computed by the training script's own functions (one copy of the
formula), which are checked here on small examples worked out by hand."""

from __future__ import annotations

import importlib
import json
import math
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from gpt2onnx.runtime import DEFAULT_MODEL, ModelLoadError, load

from conftest import cli_json, run_cli

EVAL_DATA = Path(__file__).parent / "data" / "default_model"
README = Path(__file__).resolve().parents[1] / "README.md"
TRAINING = Path(__file__).resolve().parents[1] / "training"
SIZE_LIMIT = 30 * 10**6  # bytes in git


@pytest.fixture(scope="module")
def model():
    return load(provider="cpu")


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((DEFAULT_MODEL / "training.json").read_text())


@pytest.fixture(scope="module")
def training():
    """training/train_default_model.py as a module (training/ is a folder of scripts, not a package)."""
    sys.path.insert(0, str(TRAINING))  # for its `import corpus`
    try:
        return importlib.import_module("train_default_model")
    finally:
        sys.path.remove(str(TRAINING))


def heldout_texts(training) -> list[str]:
    """The held-out cookies framed as in training: after a separator, ending with one."""
    docs = (EVAL_DATA / "heldout.txt").read_text(encoding="utf-8").removesuffix("\n").split("\n%\n")
    return training.heldout_texts(docs)


def test_unigram_perplexity_by_hand(training):
    # Counts of 3, 1 and 0 for tokens 1, 2 and 3 in a vocabulary of 4: add-one smoothing makes
    # them 4, 2 and 1 out of 4 + 4 = 8. Each text's first token is not predicted, so [0, 1, 2, 3]
    # scores 1, 2, 3 (1/2, 1/4, 1/8) and [9, 1] scores 1 (1/2): (1/2 * 1/4 * 1/8 * 1/2) ** (-1/4) = 2 ** 1.75.
    assert training.unigram_perplexity({1: 3, 2: 1}, 4, [[0, 1, 2, 3], [9, 1]]) == pytest.approx(2**1.75, rel=1e-12)
    # A uniform model's perplexity is the vocabulary size.
    assert training.unigram_perplexity({}, 50257, [[5, 6, 7]]) == pytest.approx(50257, rel=1e-12)
    # Counts take one separator per training document.
    assert training.unigram_counts([[1, 2], [2]]) == {1: 1, 2: 2, training.EOT_ID: 2}


def unigram_perplexity(training, ids: list[list[int]]) -> float:
    """The training script's add-one-smoothed unigram perplexity, with the training-split counts it saved."""
    data = json.loads((EVAL_DATA / "unigram.json").read_text())
    return training.unigram_perplexity({int(k): v for k, v in data["counts"].items()}, data["vocab_size"], ids)


def test_load_without_a_folder_is_the_shipped_model(model, record):
    assert model.folder == DEFAULT_MODEL
    assert model.manifest["files"].keys() <= {p.name for p in DEFAULT_MODEL.iterdir()}
    config = record["config"]
    assert (model.info.n_layer, model.info.n_head, model.info.n_embd, model.info.n_positions) == (
        config["n_layer"],
        config["n_head"],
        config["n_embd"],
        config["n_positions"],
    )
    # GPT-2's own tokenizer: a drop-in member of the family.
    assert model.info.vocab_size == 50257 and model.info.eos_token_id == 50256
    assert model.tokenizer.encode(" hello") == [23748]
    assert sum(p.stat().st_size for p in DEFAULT_MODEL.iterdir()) <= SIZE_LIMIT


def test_a_tampered_copy_fails_the_manifest_check(tmp_path):
    copy = Path(shutil.copytree(DEFAULT_MODEL, tmp_path / "model"))
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        load(copy, provider="cpu")


@pytest.mark.slow  # held-out perplexity of the shipped model (~16 s)
def test_beats_the_unigram_baseline_on_heldout_cookies(model, record, training):
    texts = heldout_texts(training)
    assert len(texts) == record["evaluation"]["heldout_documents"]
    scores = model.score(texts)
    tokens = sum(s.token_count for s in scores)
    perplexity = math.exp(-sum(s.logprob for s in scores) / tokens)
    unigram = unigram_perplexity(training, [model.tokenizer.encode(t) for t in texts])
    # The figures the training run recorded (and the README quotes) are this model's.
    assert tokens == record["evaluation"]["heldout_tokens"]
    assert perplexity == pytest.approx(record["evaluation"]["heldout_perplexity"], rel=1e-4)
    assert unigram == pytest.approx(record["evaluation"]["unigram_perplexity"], rel=1e-6)
    assert perplexity < unigram / 4


@pytest.mark.slow  # six CLI runs of 60 tokens (~4 s)
def test_generate_without_model_writes_english_from_the_shipped_model():
    outs = [
        cli_json("generate", "--json", "--provider", "cpu", "--max-new-tokens", "60", "--seed", str(seed), "Once upon a time")
        for seed in range(6)
    ]
    assert all(out["model"] == str(DEFAULT_MODEL) for out in outs)
    text = " ".join(out["results"][0]["sequences"][0]["text"] for out in outs)
    words = [w.strip(".,;:!?\"'()-") for w in text.split()]
    words = [w for w in words if w.isalpha()]
    # Recognisable English: most words are words GPT-2's vocabulary holds whole.
    vocab = json.loads((DEFAULT_MODEL / "vocab.json").read_text())
    known = [w for w in words if {f"\u0120{w}", f"\u0120{w.lower()}", f"\u0120{w.capitalize()}"} & vocab.keys()]
    assert len(words) >= 12
    assert len(known) / len(words) >= 0.8, words


def test_plain_generate_runs_offline():
    # No network is touched: a blocked proxy and offline hub switches change nothing.
    env = {"HF_HUB_OFFLINE": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = run_cli("generate", "--max-new-tokens", "10", "--seed", "3", "Once upon a time", env=env)
    assert result.returncode == 0, result.stderr
    # The shipped model samples by default and may end early at its eos: a seed makes the text known.
    expected = load(provider="cpu").generate("Once upon a time", max_new_tokens=10, seed=3).text
    assert result.stdout == "Once upon a time" + expected + "\n" and len(expected) > 10


def readme_samples() -> list[tuple[list[str], str]]:
    """The README's "What it writes" block: (gpt2onnx arguments, what it printed)."""
    block = README.read_text(encoding="utf-8").split("```text\n$ gpt2onnx generate", 1)[1].split("```", 1)[0]
    samples = []
    for sample in re.split(r"^\$ ", "$ gpt2onnx generate" + block, flags=re.M)[1:]:
        command, _, output = sample.partition("\n")
        samples.append((shlex.split(command.split("#")[0])[1:], output.rstrip("\n")))
    return samples


def test_the_readme_shows_what_it_writes():
    samples = readme_samples()
    assert len(samples) >= 3 and any("--no-do-sample" in args for args, _ in samples)
    for args, output in samples:
        result = run_cli(*args, "--provider", "cpu")
        assert result.returncode == 0, result.stderr
        assert result.stdout.rstrip("\n") == output, args
