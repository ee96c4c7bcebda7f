"""Benchmark: one sampling step on GPT-2's 50257-token vocabulary.

Times gpt2onnx's processors + warpers + sampler (temperature, top_k, top_p and
repetition_penalty together, plus other mixes) on one row of logits, and
transformers' own LogitsProcessorList + multinomial on the same logits as the
peer, in the same run. Prints medians and ratios; the goal is <= 0.5 ms median
for the combined step. Run: .venv/bin/python tests/bench_sampler.py

Two conditions: "warm", steps back to back; and "cold", as inside generation,
where each step follows a forward pass that streams the weights (here 256 MB)
through the CPU caches and leaves the sampler's code and data cold.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from gpt2onnx.runtime import GenerationConfig, processors, sampling, warpers

VOCAB = 50257
REPEATS = 2000


COLD_BYTES = np.ones(64 * 2**20, np.float32)  # 256 MB: a 124M model's weights are 500 MB


def median_ms(step, repeats: int = REPEATS, cold: bool = False) -> float:
    for _ in range(50):  # warm-up
        step()
    times = []
    for _ in range(repeats // 10 if cold else repeats):
        if cold:
            COLD_BYTES.sum()  # what a forward pass does to the caches
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
    # glibc serves same-size blocks over 128 kB with mmap (a page fault per 4 kB on
    # every use) until a larger block is freed; generation frees its growing KV cache
    # every step, so do that once, as the runtime's own process state would be.
    np.ones(2**18).sum()  # a 2 MB block, freed
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((1, VOCAB)) * 3).astype(np.float32)  # [1, vocab]: spread like a trained model's
    context = rng.integers(0, VOCAB, 128)  # 128 tokens of history
    history = processors.History([context], new_tokens=64, length=len(context))
    mixes = {
        "temperature+top_k+top_p+repetition_penalty": dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2),
        "top_p alone (no top_k)": dict(do_sample=True, top_k=0, top_p=0.9),
        "greedy + repetition_penalty": dict(repetition_penalty=1.2),
    }
    print(f"one sampling step, vocab {VOCAB}, median of {REPEATS} warm / {REPEATS // 10} cold steps:")
    for name, settings in mixes.items():
        step = ours(GenerationConfig(**settings), logits, history, np.random.default_rng(1))
        warm, cold = median_ms(step), median_ms(step, cold=True)
        line = f"  {name:43s} gpt2onnx warm {warm:6.3f} ms, cold {cold:6.3f} ms"
        try:
            peer_step = peer(settings, logits, context)
            peer_warm, peer_cold = median_ms(peer_step, REPEATS // 4), median_ms(peer_step, REPEATS // 4, cold=True)
            line += f" | transformers warm {peer_warm:6.3f}, cold {peer_cold:6.3f} ms | ratio {peer_warm / warm:5.2f}x, {peer_cold / cold:5.2f}x"
        except ImportError:
            line += " | (transformers not installed: no peer)"
        print(line)
    combined = median_ms(ours(GenerationConfig(**mixes["temperature+top_k+top_p+repetition_penalty"]), logits, history, np.random.default_rng(2)))
    print(f"goal: combined step <= 0.5 ms median (warm): {combined:.3f} ms -> {'met' if combined <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
