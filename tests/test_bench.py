"""The speed benchmark's smoke test, and the honesty of `gpt2onnx generate --json`'s timing.

benchmarks/speed.py --quick runs every contender on a tiny random GPT-2 in
its own process (about 20 s on 2 cores); the test checks that its JSON holds
every metric of every contender as a positive number and that the contenders
made the same tokens, so the full benchmark (124M shape, minutes) cannot rot
unnoticed. It needs the export extra, not matplotlib: --quick skips the plot
when matplotlib is missing.
"""

from __future__ import annotations

import json
import os
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SPEED = Path(__file__).resolve().parent.parent / "benchmarks" / "speed.py"
OURS = ("gpt2onnx-fp32", "gpt2onnx-int8", "gpt2onnx-int8-kv8", "gpt2onnx-int4", "gpt2onnx-int4-kv8")
PEERS = ("optimum", "transformers")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("speed")
    result = subprocess.run(
        [sys.executable, str(SPEED), "--quick", "--out", str(root / "out"), "--work", str(root / "work")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (root / "out" / "speed.md").is_file()
    return json.loads((root / "out" / "speed.json").read_text())


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow  # every contender of speed.py --quick in its own process (~40 s)
def test_quick_benchmark_measures_every_contender(quick_report):
    report = quick_report
    expected = set(OURS + PEERS)
    assert set(report["contenders"]) == expected
    for name in expected:
        keys = [m["key"] for m in report["metrics"] if name in OURS or not m["ours_only"]]
        (run,) = report["runs"][name]  # --quick: one repeat
        assert "error" not in run, run
        for key in keys:
            assert positive(run.get(key)), (name, key, run.get(key))
            assert positive(report["summary"][name][key]["median"]), (name, key)
        for c in report["plan"]["contexts"]:
            assert positive(report["summary"][name][f"decode_tok_s_ctx{c}"]["median"])
    # Greedy on the same weights: gpt2onnx's Run path and Optimum make transformers' ids (batch 1 and the best beam).
    assert report["same_tokens_as_transformers"] == {n: {"decode_tokens": True, "beam_tokens": True} for n in ("gpt2onnx-fp32", "optimum")}
    for name in OURS:
        assert report["runs"][name][0]["torch_imported"] is False  # the runtime runs without PyTorch
        assert positive(report["weights"][name]["read_bytes_per_token"])


@pytest.mark.slow  # the same --quick run (its module fixture)
def test_quick_benchmark_reports_ratios_and_targets(quick_report):
    report = quick_report
    assert positive(report["bandwidth"]["read_gbs"])
    assert report["machine"]["cpu"] and report["machine"]["threads"] >= 1
    for peer in PEERS:
        ratio = report["ratios"][f"gpt2onnx-fp32/{peer}"]["decode_tok_s"]
        assert positive(ratio["median"]) and ratio["min"] <= ratio["median"] <= ratio["max"]
    statuses = {t["text"]: t["status"] for t in report["targets"]}
    assert len(statuses) == 25 and set(statuses.values()) <= {"PASS", "FAIL"}  # every contender ran: no SKIP
    agreement = report["int8_agreement"]
    assert agreement and all(isinstance(p["equal"], bool) for p in agreement["prompts"])
    assert math.isfinite(agreement["max_abs_logprob_diff"])


def test_generate_json_timing_is_honest(exports, capsys):
    """prefill_s and decode_s are real, fit inside the wall-clock time, and new_tokens counts the tokens made."""
    from gpt2onnx import cli

    handler = signal.getsignal(signal.SIGTERM)  # main() installs its own
    args = ["generate", "--model", str(exports["tiny"].onnx_dir), "--provider", "cpu", "--json", "--no-do-sample"]
    args += ["--max-new-tokens", "12", "--min-new-tokens", "12", "Hello there", "A longer prompt than the first one"]
    try:
        started = time.perf_counter()
        code = cli.main(args)
        wall = time.perf_counter() - started
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    timing = data["timing"]
    assert positive(timing["prefill_s"]) and positive(timing["decode_s"]) and positive(timing["load_s"])
    made = sum(len(s["token_ids"]) for r in data["results"] for s in r["sequences"])
    assert made == 24 and timing["new_tokens"] == made and timing["steps"] == 24
    assert wall >= timing["load_s"] + timing["prefill_s"] + timing["decode_s"]
    # Rows that share steps: 3 sampled sequences of 5 tokens are 15 tokens in 5 steps.
    args = ["generate", "--model", str(exports["tiny"].onnx_dir), "--provider", "cpu", "--json", "--do-sample", "--seed", "1"]
    args += ["--max-new-tokens", "5", "--min-new-tokens", "5", "--num-return-sequences", "3", "Hello there"]
    try:
        assert cli.main(args) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    timing = json.loads(capsys.readouterr().out)["timing"]
    assert timing["new_tokens"] == 15 and timing["steps"] == 5


def test_llama_cpp_left_out_with_its_reason_where_it_cannot_run(tmp_path):
    """Where llama.cpp's tools are missing, the run says why and goes on with the others."""
    empty = tmp_path / "no-llama"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, str(SPEED), "--quick", "--contenders", "gpt2onnx-fp32,llama.cpp-q4_0", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "GPT2ONNX_LLAMA_CPP_BIN": str(empty)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert report["contenders"] == ["gpt2onnx-fp32"] and "lacks llama-bench" in report["unavailable"]["llama.cpp-q4_0"]
    assert "llama.cpp-q4_0: left out" in result.stdout
