"""The GPU benchmark's rehearsal: `python -m benchmarks.gpu --device cpu --quick` runs the
code the CUDA run runs (exports, one process measuring every contender interleaved,
`gpt2onnx serve` under load, the bandwidth bound, the report) on the CPU with a tiny
model, so the GPU benchmark cannot rot between the rare runs on a GPU machine.

About 30 s on 2 cores: one checkpoint, three exports, two measuring processes, two servers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow  # the whole CPU rehearsal: exports, measurements, two servers (~40 s)
def test_the_cpu_rehearsal_measures_every_contender_and_writes_the_report(tmp_path):
    command = [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert report["device"]["name"].startswith("cpu (rehearsal)")
    assert set(report["runs"]) == {"tiny/fp32", "tiny/fp16"}
    plan = report["plan"]
    decode = [f"decode_b{b}" for b in plan["batches"]]
    ttft = [f"ttft_{p}" for p in plan["ttft_prompts"]]
    # Every contender that runs on the CPU measured every figure; the others say why they didn't.
    measured = {"tiny/fp32": ("ours", "optimum", "transformers"), "tiny/fp16": ("ours", "transformers")}
    for key, names in measured.items():
        contenders = report["runs"][key]["contenders"]
        assert "error" not in report["runs"][key]
        for name in names:
            assert "error" not in contenders[name], (key, name, contenders[name])
            for metric in decode + ttft:
                assert len(contenders[name]["runs"][metric]) == 1 and positive(contenders[name]["runs"][metric][0]), (key, name, metric)
        assert contenders["transformers+compile"]["error"].startswith("skipped: torch.compile runs on CUDA only")
    assert "needs CUDA" in report["runs"]["tiny/fp16"]["contenders"]["optimum"]["error"]
    # Greedy on the same float32 weights: the same ids, from both peers.
    fp32 = report["runs"]["tiny/fp32"]["contenders"]
    assert len(fp32["ours"]["tokens_b1"]) == plan["new_tokens"]
    assert fp32["ours"]["tokens_b1"] == fp32["transformers"]["tokens_b1"] == fp32["optimum"]["tokens_b1"]
    # gpt2onnx serve on the device: every request answered, tokens streamed.
    for key in measured:
        levels = report["serving"][key]["levels"]
        assert [f["concurrency"] for f in levels] == list(plan["serve_levels"])
        assert all(f["errors"] == 0 and f["tokens"] > 0 and positive(f["tok_s"]) for f in levels), levels
    assert positive(report["bandwidth"]["gbs"])
    assert set(report["weights"]["tiny"]) == {"ours-fp32", "ours-fp16", "optimum-fp32"}
    assert all(phase.startswith("done") for phase in report["phases"].values()), report["phases"]
    markdown = (tmp_path / "out" / "gpu.md").read_text()
    for heading in ("## Decode and time to first token", "## Ours ÷ peer", "## Same greedy tokens", "## Serving", "## Memory-bandwidth bound", "## Targets"):
        assert heading in markdown
    assert "| tiny | fp32 | ours |" in markdown and "| tiny | fp32 | optimum |" in markdown
    assert "- tiny/fp32: ours vs transformers: equal" in markdown


def test_a_deadline_skips_every_phase_not_begun(tmp_path):
    command = [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--deadline-s", "0", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu.json").read_text())
    phases = ("tiny/build", "tiny/fp32/measure", "tiny/fp32/serve", "tiny/fp16/measure", "tiny/fp16/serve")
    assert report["phases"] == dict.fromkeys(phases, "skipped: deadline")
    assert "tiny/build: skipped: deadline" in (tmp_path / "out" / "gpu.md").read_text()
