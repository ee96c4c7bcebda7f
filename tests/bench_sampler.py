"""Benchmark: one sampling step on GPT-2's 50257-token vocabulary.

Times gpt2onnx's processors + warpers + sampler (temperature, top_k, top_p and
repetition_penalty together, plus other mixes) on one row of logits, and
transformers' own LogitsProcessorList + multinomial on the same logits as the
peer, in the same run. Prints medians and ratios; the goal is <= 0.5 ms median
for the combined step. Run: .venv/bin/python tests/bench_sampler.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from gpt2onnx.runtime import GenerationConfig, processors, sampling, warpers

VOCAB = 50257
REPEATS = 2000


def median_ms(step, repeats: int = REPEATS) -> float:
    for _ in range(50):  # warm-up
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def ours(config: GenerationConfig, logits: np.ndarray, history: processors.History, rng: np.random.Generator):
    def step():
        scores = processors.process(logits, history, config)
        if config.do_sample:
            return sampling.sample(warpers.warp(scores, config), rng)
        return sampling.greedy(scores)

    return step


def peer(settings: dict, logits: np.ndarray, context: np.ndarray):
    import torch
    from transformers import GenerationConfig as HFConfig
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    hf = HFConfig(**settings)
    chain = LogitsProcessorList()
    if hf.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(hf.repetition_penalty))
    if hf.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(hf.temperature))
    if hf.top_k:
        chain.append(TopKLogitsWarper(hf.top_k))
    if hf.top_p < 1.0:
        chain.append(TopPLogitsWarper(hf.top_p))
    scores, ids = torch.from_numpy(logits), torch.from_numpy(context[None, :])
    torch.set_num_threads(1)

    def step():
        with torch.no_grad():
            return torch.multinomial(torch.softmax(chain(ids, scores.clone()), dim=-1), 1)

    return step


def main() -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((1, VOCAB)) * 3).astype(np.float32)  # [1, vocab]: spread like a trained model's
    context = rng.integers(0, VOCAB, 128)  # 128 tokens of history
    history = processors.History([context], new_tokens=64, length=len(context))
    mixes = {
        "temperature+top_k+top_p+repetition_penalty": dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2),
        "top_p alone (no top_k)": dict(do_sample=True, top_k=0, top_p=0.9),
        "greedy + repetition_penalty": dict(repetition_penalty=1.2),
    }
    print(f"one sampling step, vocab {VOCAB}, {REPEATS} repeats, median:")
    for name, settings in mixes.items():
        ms = median_ms(ours(GenerationConfig(**settings), logits, history, np.random.default_rng(1)))
        line = f"  {name:45s} gpt2onnx {ms:7.3f} ms"
        try:
            peer_ms = median_ms(peer(settings, logits, context), repeats=REPEATS // 4)
            line += f"   transformers (torch, 1 thread) {peer_ms:7.3f} ms   ratio {peer_ms / ms:5.2f}x"
        except ImportError:
            line += "   (transformers not installed: no peer)"
        print(line)
    combined = median_ms(ours(GenerationConfig(**mixes["temperature+top_k+top_p+repetition_penalty"]), logits, history, np.random.default_rng(2)))
    print(f"goal: combined step <= 0.5 ms median: {combined:.3f} ms -> {'met' if combined <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
