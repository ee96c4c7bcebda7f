"""Text classification: a GPT2ForSequenceClassification export gives transformers' label
scores on right-padded batches, the same labels alone as in a batch, on the command line
as in Python, and every wrong use is refused in one line.

Two random checkpoints: one with pad_token_id set (to eos, as GPT-2 fine-tunes do), one
without it, which the export pads with the eos token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2onnx.export.pipeline import export_model
from gpt2onnx.export.random_model import make_random_gpt2_classifier
from gpt2onnx.runtime import Classification, ModelLoadError, UsageError, contract, load
from gpt2onnx.runtime.classifier import ClassifierSession, pad_right
from gpt2onnx.runtime.manifest import model_info, read_manifest

from conftest import cli_json, run_cli
from test_export import assert_one_line_error

LABELS = ("negative", "neutral", "positive")
SHAPE = dict(n_layer=2, n_head=4, n_embd=64, n_positions=128)
EOS = 50256  # GPT-2's <|endoftext|>: the pad token of both checkpoints' exports
TEXTS = [
    "Hello, my dog is cute",
    "a",  # one token
    "the pad token <|endoftext|> in the middle of a text",  # read at the text's last token, as transformers does
    "a text that ends with the pad token<|endoftext|>",  # read at the token before it, as transformers does
    "The quick brown fox jumps over the lazy dog. Then it ran into the forest, where nobody could find it.",
]
ATOL = 1e-4


def make_classifier(out: Path, seed: int, pad_token_id: int | None) -> Path:
    """A random GPT2ForSequenceClassification with GPT-2's tokenizer and three labels."""
    return make_random_gpt2_classifier(out, LABELS, pad_token_id, seed=seed, **SHAPE)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, tuple[Path, Path, object]]:
    """name -> (checkpoint, export folder, ExportReport): "pad" sets pad_token_id, "no_pad" leaves it unset."""
    root = tmp_path_factory.mktemp("classifiers")
    out = {}
    for name, pad, seed in (("pad", EOS, 2), ("no_pad", None, 1)):  # seeds whose labels differ between TEXTS
        checkpoint = make_classifier(root / name / "checkpoint", seed, pad)
        out[name] = (checkpoint, root / name / "onnx", export_model(str(checkpoint), root / name / "onnx"))
    return out


@pytest.fixture(scope="module")
def models(exports):
    return {name: load(onnx_dir, provider="cpu") for name, (_, onnx_dir, _) in exports.items()}


def torch_logits(checkpoint: Path, ids_list: list[list[int]], pad: int) -> np.ndarray:
    """transformers' scores [texts, labels] for the token lists right-padded with `pad`, masked."""
    from transformers import GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification.from_pretrained(checkpoint, pad_token_id=pad).eval()
    input_ids, attention_mask = pad_right(ids_list, pad)
    with torch.no_grad():
        return model(torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask)).logits.numpy()


@pytest.mark.parametrize("name", ["pad", "no_pad"])
def test_batch_matches_transformers(exports, models, name):
    checkpoint, _, _ = exports[name]
    model = models[name]
    ids_list = [model.tokenizer.encode(text) for text in TEXTS]
    assert len(ids_list[1]) == 1 and EOS in ids_list[2][:-1] and ids_list[3][-1] == EOS
    want = torch_logits(checkpoint, ids_list, EOS)  # [texts, labels]
    results = model.classify(TEXTS)
    got = np.array([r.logits for r in results])  # [texts, labels]
    diff = float(np.abs(got - want).max())
    print(f"{name}: max |logit diff| vs transformers {diff:.2e}")
    assert diff < ATOL
    assert [r.label for r in results] == [LABELS[i] for i in want.argmax(axis=-1)]
    assert len({r.label for r in results}) > 1  # the random heads do tell texts apart
    for text, r in zip(TEXTS, results):
        assert isinstance(r, Classification) and r.text == text
        assert tuple(r.probabilities) == LABELS  # label-id order
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert r.label == max(r.probabilities, key=r.probabilities.get)


def test_batch_equals_each_text_alone(models):
    model = models["pad"]
    together = model.classify(TEXTS * 4)  # 20 texts: two batches of at most 16
    for i, text in enumerate(TEXTS * 4):
        alone = model.classify([text])[0]
        assert alone.label == together[i].label
        np.testing.assert_allclose(alone.logits, together[i].logits, atol=1e-5)
    assert model.classify([]) == []


def test_manifest_and_report(exports):
    for name, (_, onnx_dir, report) in exports.items():
        manifest = json.loads((onnx_dir / contract.MANIFEST_FILE).read_text())
        assert manifest["model"]["architecture"] == contract.GPT2_CLASSIFIER
        assert manifest["model"]["labels"] == list(LABELS)
        assert manifest["model"]["pad_token_id"] == EOS  # set (pad), or the eos fallback (no_pad)
        assert manifest["io"] == contract.classifier_signature()
        assert json.loads((onnx_dir / contract.CONFIG_FILE).read_text())["pad_token_id"] == EOS
        assert (onnx_dir / contract.TOKENIZER_FILE).is_file()
        assert report.graph["pad_token_id"] == EOS and report.graph["labels"] == list(LABELS)
        assert report.validation["max_abs_diff"] < ATOL and report.validation["positions_checked"] == 3
        assert report.validation["top1_agreement"] == 1.0
        info = model_info(read_manifest(onnx_dir), onnx_dir)
        assert info.task == contract.TEXT_CLASSIFICATION and info.labels == LABELS


def test_cli_classify(exports, models):
    onnx_dir = str(exports["pad"][1])
    report = cli_json("classify", "--model", onnx_dir, "--provider", "cpu", "--json", *TEXTS)
    assert report["provider"] == "cpu" and report["timing"]["classify_s"] > 0
    results = report["results"]
    expected = models["pad"].classify(TEXTS)
    assert [r["text"] for r in results] == TEXTS
    assert [r["label"] for r in results] == [r.label for r in expected]
    assert [list(r["probabilities"]) for r in results] == [list(LABELS)] * len(TEXTS)
    plain = run_cli("classify", "--model", onnx_dir, "--provider", "cpu", "-", stdin="I loved it")
    assert plain.returncode == 0, plain.stderr
    (line,) = plain.stdout.splitlines()
    assert line.startswith(models["pad"].classify(["I loved it"])[0].label + " ") and line.endswith("'I loved it'")


def test_errors_are_one_line(exports, tmp_path):
    checkpoint, onnx_dir, _ = exports["pad"]
    cls = ["--model", str(onnx_dir), "--provider", "cpu"]
    cases = [
        (("generate", *cls, "Hello"), "is a text-classification model (GPT2ForSequenceClassification)"),
        (("score", *cls, "Hello there"), "is a text-classification model"),
        (("serve", "--model", str(onnx_dir)), "is a text-classification model"),
        (("classify", "--provider", "cpu", "Hello"), "is a text-generation model (GPT2LMHeadModel): classify needs"),
        (("classify", *cls, "fine", ""), "text 1 ('') has no tokens"),
        (("classify", *cls, "word" + " word" * 199), "is 200 tokens but the model's context (n_positions) is 128"),
        (("export", str(checkpoint), str(tmp_path / "int8"), "--int8"), "--int8 is for text-generation exports"),
    ]
    for args, text in cases:
        assert_one_line_error(run_cli(*args), 2, text)
    assert not (tmp_path / "int8").exists()


def test_python_refusals(exports, models):
    model = models["pad"]
    with pytest.raises(UsageError, match="takes a list of texts"):
        model.classify("one text")
    refused = [
        lambda: model.generate("Hello"),
        lambda: model.stream("Hello"),
        lambda: model.generator(),
        lambda: model.engine(),
        lambda: model.score(["Hello there"]),
        lambda: model.prompt_logprobs([1, 2]),
        lambda: model.check_prompts([[1, 2]]),
    ]
    for call in refused:
        with pytest.raises(UsageError, match=r"is a text-classification model .*: use classify\(\)"):
            call()
    with pytest.raises(UsageError, match="is a text-generation model"):
        load(provider="cpu").classify(["Hello"])
    # A generator's graph under a classifier's manifest: refused by the I/O check.
    generator = load(provider="cpu")
    with pytest.raises(ModelLoadError, match="do not match a GPT2ForSequenceClassification graph"):
        ClassifierSession(generator.folder / contract.MODEL_FILE, model.info, provider="cpu")


def test_desktop_refuses_a_classifier(exports):
    pytest.importorskip("PySide6")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from gpt2onnx.desktop.worker import ModelLoader

    loader = ModelLoader(str(exports["pad"][1]), "cpu")
    errors, loaded = [], []
    loader.error.connect(errors.append)
    loader.loaded.connect(lambda *args: loaded.append(args))
    loader.run()
    assert not loaded and len(errors) == 1 and "is a text-classification model" in errors[0] and "\n" not in errors[0]
