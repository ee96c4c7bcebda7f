"""Shared fixtures: random-init GPT-2 checkpoints in several shapes, exported once
per test session, with transformers' PyTorch model beside each as the oracle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpt2onnx.export.optimize import GraphPlan
from gpt2onnx.export.pipeline import ExportReport, export_model
from gpt2onnx.export.random_model import GPT2_SMALL, make_random_gpt1, make_random_gpt2
from gpt2onnx.runtime import load

# Three shapes: a plain one, an odd head layout (head_dim 16 from n_embd=80, n_head=5)
# with a short context, and a deeper narrow one with a very short context.
SHAPES = {
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, n_positions=1024),
    "odd_heads": dict(n_layer=2, n_head=5, n_embd=80, n_positions=128),
    "deep_short": dict(n_layer=4, n_head=2, n_embd=32, n_positions=64),
}

# deep_short keeps Optimum's graph, so the parametrized parity, decoding and scoring tests
# also run the concatenating KV path (`--graph optimum`, and checkpoints the fast graph
# can't express); the others are the default GroupQueryAttention graph.
PLANS = {"deep_short": GraphPlan(graph="optimum")}

CLI = str(Path(sys.executable).with_name("gpt2onnx"))


@dataclass
class Exported:
    name: str
    checkpoint: Path  # the PyTorch checkpoint folder
    onnx_dir: Path  # its gpt2onnx export
    report: ExportReport


def _export(root: Path, name: str, shape: dict, seed: int = 0) -> Exported:
    checkpoint = make_random_gpt2(root / name / "checkpoint", seed=seed, **shape)
    report = export_model(str(checkpoint), root / name / "onnx", plan=PLANS.get(name, GraphPlan()))
    return Exported(name, checkpoint, root / name / "onnx", report)


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict[str, Exported]:
    root = tmp_path_factory.mktemp("models")
    return {name: _export(root, name, shape, seed=i) for i, (name, shape) in enumerate(SHAPES.items())}


@pytest.fixture(scope="session", params=list(SHAPES))
def exported(request, exports) -> Exported:
    return exports[request.param]


@pytest.fixture(scope="module")
def models(exports) -> dict:
    """Each shape's export loaded on the CPU: name -> Model. Per module, so no module sees another's
    use of a model (tests/test_classify.py overrides it, with its own classifier `exports`)."""
    return {name: load(e.onnx_dir, provider="cpu") for name, e in exports.items()}


@pytest.fixture(scope="session")
def gpt2_small(tmp_path_factory) -> Exported:
    """A random model in the real gpt2 (124M) shape."""
    return _export(tmp_path_factory.mktemp("gpt2_small"), "gpt2_small", GPT2_SMALL, seed=7)


@pytest.fixture(scope="session")
def gpt1(tmp_path_factory) -> Exported:
    """A random GPT-1 (OpenAIGPTLMHeadModel, 512 positions) with a GPT-1-format BPE, exported."""
    root = tmp_path_factory.mktemp("gpt1")
    checkpoint = make_random_gpt1(root / "checkpoint")
    return Exported("gpt1", checkpoint, root / "onnx", export_model(str(checkpoint), root / "onnx"))


_torch_models: dict[Path, object] = {}


def torch_model(checkpoint: Path):
    """transformers' model for a checkpoint (cached), the oracle: the class its config names
    (GPT2LMHeadModel, OpenAIGPTLMHeadModel), with eager attention, the reference one (transformers
    4.57's SDPA ignores scale_attn_weights and scale_attn_by_inverse_layer_idx, transformers#44380)."""
    if checkpoint not in _torch_models:
        from transformers import AutoModelForCausalLM

        _torch_models[checkpoint] = AutoModelForCausalLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    return _torch_models[checkpoint]


def hf_greedy(checkpoint: Path, ids: list[int], max_new_tokens: int, **kwargs) -> list[int]:
    """transformers' greedy continuation of `ids` (new tokens only)."""
    import torch

    model = torch_model(checkpoint)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=model.config.eos_token_id,
            **kwargs,
        )
    return out[0, len(ids) :].tolist()


@pytest.fixture
def device_cache(monkeypatch):
    """Every SharedKVCache made meanwhile keeps its block out of the host's reach, as on CUDA:
    only the graph can move its rows (runtime/kv_rows.py). Yields the sizes of the graph's moves."""
    from gpt2onnx.runtime import kv_rows
    from gpt2onnx.runtime.session import DecoderSession

    kept, moves = [], []
    block = DecoderSession.kv_block

    def hidden(self, shape):
        value, host = block(self, shape)
        kept.append(host)  # the OrtValue shares its memory
        return value, None

    move = kv_rows.RowMover.move
    monkeypatch.setattr(DecoderSession, "kv_block", hidden)
    monkeypatch.setattr(kv_rows.RowMover, "move", lambda self, *a: (moves.append(len(a[2])), move(self, *a))[1])
    monkeypatch.setattr(kv_rows, "move_host", lambda *a: pytest.fail("numpy moved rows of a device cache"))
    yield moves


def run_staggered(engine, pending: list, every: int, steps: int = 300) -> None:
    """Submit each (search, prompt ids) of `pending` to the slot engine, one every `every` steps
    (they queue while its slots are busy), and step it until every search has finished."""
    pending = list(pending)
    for step in range(steps):
        if step % every == 0 and pending:
            search, ids = pending.pop(0)
            engine.submit(search, [ids])
        if not engine.has_work() and not pending:
            break
        engine.step()
    assert not pending and not engine.has_work()


def cuda_problem_for(folder: Path) -> str | None:
    """Why `folder`'s export can't run on CUDA here: the machine's reason, else the model's (a float32
    export's attention has no CUDA kernel), else None."""
    from gpt2onnx.runtime.manifest import model_info, read_manifest
    from gpt2onnx.runtime.providers import cuda_problem
    from gpt2onnx.runtime.session import cuda_blocker

    return cuda_problem() or cuda_blocker(model_info(read_manifest(Path(folder)), Path(folder)))


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `gpt2onnx` console script; capture text output."""
    return subprocess.run(
        [CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cli_json(*args: str, **kwargs) -> dict:
    result = run_cli(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
