"""Loading an export folder: manifest and graph checks, providers, and the
runtime's promise never to import the heavy export stack."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings

import pytest

from gpt2onnx.runtime import ModelLoadError, ProviderError, ProviderFallbackWarning, load
from conftest import cuda_problem_for


@pytest.fixture
def copy(exports, tmp_path):
    """A private copy of the tiny export to damage."""
    return shutil.copytree(exports["tiny"].onnx_dir, tmp_path / "model")


def edit_manifest(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_runtime_never_imports_the_export_stack(exports):
    code = textwrap.dedent(
        f"""
        import sys
        from gpt2onnx.runtime import load
        model = load({str(exports["tiny"].onnx_dir)!r})
        text = "".join(model.stream("Hello", max_new_tokens=5))
        model.generate("Hello", max_new_tokens=5)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "optimum", "accelerate"))
        print(heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_loads_and_reports_the_model(exports):
    model = load(exports["odd_heads"].onnx_dir, provider="cpu")
    info = model.info
    assert (info.n_layer, info.n_head, info.n_embd, info.n_positions, info.vocab_size) == (2, 5, 80, 128, 50257)
    assert info.head_dim == 16
    assert model.provider == "cpu" and model.provider_note is None


def test_refuses_a_tampered_file(copy):
    path = copy / "model.onnx"
    with open(path, "r+b") as f:  # change one weight in the middle of the embedding
        f.seek(path.stat().st_size // 2)
        f.write(b"\x7f\x7f\x7f\x7f")
    with pytest.raises(ModelLoadError, match="does not match its sha256"):
        load(copy)
    load(copy, verify=False, provider="cpu")  # same size: only the hash can tell


def test_refuses_a_truncated_model(copy):
    data = (copy / "model.onnx").read_bytes()
    (copy / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or changed"):
        load(copy, verify=False)


def test_refuses_missing_files(copy):
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="is missing tokenizer.json"):
        load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match="has no manifest.json: it is not a gpt2onnx export folder"):
        load(copy)


def test_refuses_a_missing_folder_or_a_file(tmp_path, copy):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load(tmp_path / "nothing")
    with pytest.raises(ModelLoadError, match="is a file"):
        load(copy / "model.onnx")


def test_refuses_an_unknown_manifest_version(copy):
    edit_manifest(copy, lambda m: m.update(format_version=99))
    with pytest.raises(ModelLoadError, match="format version 99"):
        load(copy)


def test_refuses_a_graph_that_does_not_match_the_manifest(copy):
    edit_manifest(copy, lambda m: m["model"].update(n_layer=3))
    with pytest.raises(ModelLoadError, match="do not match a GPT-2 decoder with past for n_layer=3"):
        load(copy, provider="cpu")


def test_refuses_a_huge_n_layer_before_building_its_signature(copy):
    # A full test run was killed for memory during test_fuzz's broken manifests. A junk n_layer in the
    # millions would do it: the I/O signature (four entries a layer) was built before anything compared
    # it with the graph.
    edit_manifest(copy, lambda m: m["model"].update(n_layer=10**9))
    with pytest.raises(ModelLoadError, match="the manifest says n_layer=1000000000 but the graph has"):
        load(copy, provider="cpu")


def test_refuses_a_tokenizer_bigger_than_the_vocabulary(copy):
    edit_manifest(copy, lambda m: m["model"].update(vocab_size=1000))
    with pytest.raises(ModelLoadError, match="the tokenizer has 50257 tokens but the model only 1000"):
        load(copy)


@pytest.mark.parametrize("architecture", ["GPT2DoubleHeadsModel", [[[[]]]], {"a": 1}, 7])
def test_refuses_an_architecture_it_does_not_run_in_one_line(copy, architecture):
    # test_fuzz drew [[[[]]]]: the check hashed it (a dict lookup) and raised TypeError.
    edit_manifest(copy, lambda m: m["model"].update(architecture=architecture))
    with pytest.raises(ModelLoadError, match="has architecture .*; gpt2onnx runs GPT2LMHeadModel, OpenAIGPTLMHeadModel, GPT2ForSequenceClassification: re-export"):
        load(copy, verify=False)


def test_refuses_a_manifest_path_outside_the_folder(copy):
    edit_manifest(copy, lambda m: m["files"].update({"../secret": {"bytes": 1, "sha256": "0"}}))
    with pytest.raises(ModelLoadError, match="names a file outside the folder"):
        load(copy)


def test_cuda_runs_or_says_exactly_why_not(exports):
    folder = exports["tiny"].onnx_dir
    problem = cuda_problem_for(folder)  # the machine's reason, else this float32 export's
    if problem is None:  # a machine with a working GPU
        assert load(folder, provider="cuda").provider == "cuda"
    else:
        with pytest.raises(ProviderError, match="CUDA was asked for but can't run here: ") as info:
            load(folder, provider="cuda")
        assert problem in str(info.value)


def test_auto_falls_back_to_cpu_loudly(exports):
    folder = exports["tiny"].onnx_dir
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(folder, provider="auto")
    problem = cuda_problem_for(folder)
    if problem is None:
        assert model.provider == "cuda" and model.provider_note is None
    else:
        assert model.provider == "cpu"
        assert model.provider_note == f"running on CPU: {problem}"
        assert [str(w.message) for w in caught if w.category is ProviderFallbackWarning] == [model.provider_note]
