"""`gpt2onnx export`: the folder it writes, its manifest, its validation, its
refusals and its atomicity (nothing half-written ever looks like a model)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import onnx
import pytest

from gpt2onnx.export import pipeline
from gpt2onnx.export.random_model import make_random_gpt2
from gpt2onnx.runtime import contract
from gpt2onnx.runtime.manifest import sha256_file

from conftest import CLI, cli_json, hf_greedy, run_cli


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A fresh checkpoint for the CLI tests: 1 layer, 3 heads of 16."""
    return make_random_gpt2(tmp_path_factory.mktemp("ckpt") / "checkpoint", n_layer=1, n_head=3, n_embd=48, n_positions=256, seed=3)


def assert_one_line_error(result, code: int, text: str):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def partials(out):
    return list(out.parent.glob(f".{out.name}.partial-*"))


@pytest.mark.slow  # an export in a subprocess (~10 s)
def test_cli_export_then_generate_matches_transformers(small_checkpoint, tmp_path):
    out = tmp_path / "onnx"
    report = cli_json("export", str(small_checkpoint), str(out), "--json")
    assert report["output_dir"] == str(out)
    assert report["validation"]["max_abs_diff"] < 1e-4
    assert report["total_bytes"] == sum(report["files"].values())
    assert set(report["seconds"]) == {"load", "export", "optimize", "validate", "manifest", "total"}
    assert report["graph"] == {"architecture": "GPT2LMHeadModel", "kv_cache": "shared", "weights": "float32", "kv_cache_dtype": "float32", "plain_graph_because": None}
    result = cli_json("generate", "--model", str(out), "--json", "--max-new-tokens", "20", "Once upon a time")
    assert result["provider"] in ("cpu", "cuda")
    assert set(result["timing"]) >= {"load_s", "prefill_s", "decode_s", "new_tokens"}
    assert result["timing"]["new_tokens"] == 20
    ids = [7454, 2402, 257, 640]  # "Once upon a time"
    assert result["results"][0]["sequences"][0]["token_ids"] == hf_greedy(small_checkpoint, ids, 20)


def test_export_folder_holds_what_the_runtime_needs(exported):
    names = set(exported.report.files)
    assert {"model.onnx", "config.json", "generation_config.json", "tokenizer.json", "manifest.json"} <= names
    assert exported.report.validation["max_abs_diff"] < 1e-4
    assert exported.report.validation["cached_max_abs_diff"] < 1e-4


def test_manifest_describes_model_graph_and_files(exported):
    folder = exported.onnx_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert manifest["format"] == contract.MANIFEST_FORMAT and manifest["format_version"] == contract.MANIFEST_VERSION
    for key in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "eos_token_id"):
        assert manifest["model"][key] == config[key]
    kv_cache = exported.report.graph["kv_cache"]  # conftest.PLANS: one shape keeps Optimum's graph
    assert manifest["dtype"] == "float32" and manifest["weights"] == "float32" and manifest["kv_cache"] == kv_cache
    assert kv_cache == (contract.CONCAT_KV if exported.name == "deep_short" else contract.SHARED_KV)
    graph = onnx.load(folder / "model.onnx", load_external_data=False).graph
    n_layer = config["n_layer"]
    packed = manifest.get("packed_chunk", False)  # the GroupQueryAttention graph's prompt-chunk part
    assert packed == (kv_cache == contract.SHARED_KV)
    want_inputs = set(contract.input_names(n_layer, kv_cache, packed))
    assert {i["name"] for i in manifest["io"]["inputs"]} == {i.name for i in graph.input} == want_inputs
    assert {o["name"] for o in manifest["io"]["outputs"]} == {o.name for o in graph.output} == set(contract.output_names(n_layer, kv_cache, packed))
    on_disk = {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
    assert {"optimum-onnx", "optimum", "transformers", "torch", "onnx", "gpt2onnx"} <= set(manifest["exporter"])


def test_tied_embedding_is_stored_once(exported):
    config = json.loads((exported.onnx_dir / "config.json").read_text())
    vocab, n_embd = config["vocab_size"], config["n_embd"]
    graph = onnx.load(exported.onnx_dir / "model.onnx", load_external_data=False).graph
    embeddings = [t.name for t in graph.initializer if sorted(t.dims) == sorted([vocab, n_embd])]
    assert len(embeddings) == 1, embeddings
    # safetensors also stores the tied weight once: the ONNX file is no bigger.
    assert exported.report.files["model.onnx"] < 1.05 * (exported.checkpoint / "model.safetensors").stat().st_size


@pytest.mark.slow  # exports in subprocesses (~10 s)
def test_refuses_a_non_empty_output_unless_forced(small_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli("export", str(small_checkpoint), str(out)), 2, "exists and is not empty: pass --force")
    assert (out / "keep.txt").read_text() == "mine"
    assert run_cli("export", str(small_checkpoint), str(out), "--force", "--quiet").returncode == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert not list(tmp_path.glob(".out.*"))


def test_refuses_a_checkpoint_that_is_not_gpt2(tmp_path):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    assert_one_line_error(run_cli("export", str(bert), str(tmp_path / "out")), 2, "holds a bert checkpoint: gpt2onnx exports GPT-2 and GPT-1 models only")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "remove, message",
    [("model.safetensors", "has no weights"), ("tokenizer.json vocab.json", "has no tokenizer"), ("config.json", "has no config.json")],
)
def test_refuses_an_incomplete_checkpoint(small_checkpoint, tmp_path, remove, message):
    import shutil

    broken = shutil.copytree(small_checkpoint, tmp_path / "broken")
    for name in remove.split():
        (broken / name).unlink()
    assert_one_line_error(run_cli("export", str(broken), str(tmp_path / "out")), 2, message)


def test_refuses_a_missing_folder(tmp_path):
    assert_one_line_error(run_cli("export", str(tmp_path / "nowhere"), str(tmp_path / "out")), 2, "no such folder")


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_hub_id_offline_fails_fast(tmp_path, env):
    start = time.monotonic()
    result = run_cli("export", "gpt2onnx-test/not-cached", str(tmp_path / "out"), env={"HF_HOME": str(tmp_path / "hf"), **env})
    assert time.monotonic() - start < 60
    assert_one_line_error(result, 2, "can't be downloaded from the Hugging Face hub")


@pytest.mark.slow  # an export in a subprocess (~10 s)
def test_validation_failure_writes_nothing(small_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", str(small_checkpoint), str(out), "--atol", "1e-12")
    assert_one_line_error(result, 1, "nothing was written")
    assert not out.exists() and not partials(out)


def test_interrupted_export_leaves_nothing(small_checkpoint, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "validate", interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pipeline.export_model(str(small_checkpoint), out)
    assert not out.exists() and not partials(out)


def _start_and_wait_for_partial(checkpoint, out) -> subprocess.Popen:
    process = subprocess.Popen([CLI, "export", str(checkpoint), str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not partials(out):
        assert process.poll() is None and time.monotonic() < deadline, "export ended before its partial folder appeared"
        time.sleep(0.02)
    return process


@pytest.mark.slow  # an export in a subprocess, killed (~7 s)
def test_sigterm_cleans_up(small_checkpoint, tmp_path):
    out = tmp_path / "out"
    process = _start_and_wait_for_partial(small_checkpoint, out)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert not out.exists() and not partials(out)


@pytest.mark.slow  # two exports in subprocesses (~15 s)
def test_sigkill_leaves_no_model_and_the_next_export_succeeds(small_checkpoint, tmp_path):
    out = tmp_path / "out"
    process = _start_and_wait_for_partial(small_checkpoint, out)
    process.kill()
    process.wait(timeout=60)
    (partial,) = partials(out)
    assert not out.exists() and not (partial / "manifest.json").exists()
    assert run_cli("export", str(small_checkpoint), str(out), "--quiet").returncode == 0
    assert (out / "manifest.json").is_file() and not partials(out)  # the stale partial was swept


def olds(out):
    return list(out.parent.glob(f".{out.name}.old-*"))


def fake_model(folder, label: str):
    """A folder that stands for a whole model: its manifest says which one."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_text(label)
    (folder / "manifest.json").write_text(json.dumps({"label": label}))
    return folder


def label(folder) -> str:
    return json.loads((folder / "manifest.json").read_text())["label"]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_force_interrupted_between_its_two_renames_puts_the_old_model_back(tmp_path, monkeypatch):
    out, tmp = fake_model(tmp_path / "out", "old"), fake_model(tmp_path / ".out.partial-1", "new")
    rename = Path.rename

    def interrupted(self, target):  # Ctrl-C (or SIGTERM, raised the same way) just as the new model moves in
        if self == tmp:
            raise KeyboardInterrupt
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline._move_into_place(tmp, out)
    assert label(out) == "old" and not olds(out)


@pytest.mark.slow  # two exports in subprocesses (~10 s)
def test_a_kill_between_the_renames_is_undone_by_the_next_export(small_checkpoint, tmp_path):
    # What SIGKILL between the renames leaves: no OUTPUT_DIR, the old model set aside, the new one still partial.
    out, pid = tmp_path / "out", dead_pid()
    fake_model(tmp_path / f".out.old-{pid}", "old")
    fake_model(tmp_path / f".out.partial-{pid}", "new")
    pipeline._sweep_stale(tmp_path, "out")
    assert label(out) == "old" and not olds(out) and not partials(out)
    # The old model is back: replacing it needs --force again, as it did before the kill.
    fake_model(tmp_path / f".out.old-{pid}", "older")
    assert_one_line_error(run_cli("export", str(small_checkpoint), str(out)), 2, "exists and is not empty: pass --force")
    assert label(out) == "old" and not olds(out)  # OUTPUT_DIR was there, so the set-aside one was deleted
    assert run_cli("export", str(small_checkpoint), str(out), "--force", "--quiet").returncode == 0
    assert "label" not in json.loads((out / "manifest.json").read_text()) and not olds(out)  # a real export now


def test_a_kill_after_the_renames_leaves_the_new_model(tmp_path):
    out, pid = fake_model(tmp_path / "out", "new"), dead_pid()
    fake_model(tmp_path / f".out.old-{pid}", "old")  # killed before the old model was deleted
    pipeline._sweep_stale(tmp_path, "out")
    assert label(out) == "new" and not olds(out)


@pytest.mark.slow  # two exports in subprocesses, one on a pty (~20 s)
def test_progress_on_a_terminal_and_clean_output_in_a_pipeline(small_checkpoint, tmp_path):
    primary, secondary = pty.openpty()
    process = subprocess.Popen([CLI, "export", str(small_checkpoint), str(tmp_path / "tty")], stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    stdout, _ = process.communicate(timeout=300)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    terminal = b"".join(chunks).decode()
    assert process.returncode == 0
    for step in ("[1/5] checking", "[2/5] exporting ONNX", "[3/5] building the GroupQueryAttention graph", "[4/5] validating against PyTorch", "[5/5] hashing"):
        assert step in terminal, terminal
    assert stdout.decode().startswith("exported ")
    piped = run_cli("export", str(small_checkpoint), str(tmp_path / "piped"), "--json")
    assert piped.returncode == 0 and piped.stderr == ""
    assert json.loads(piped.stdout)["output_dir"] == str(tmp_path / "piped")
