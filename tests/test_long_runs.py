"""Long runs: generating past the context with the sliding window, and a
20,000-token soak in one process (memory and speed stay flat).

The sliding-window policy (context_overflow="slide"): when prompt + new tokens
fill n_positions, the last 3/4 of the context is run again as a fresh prompt
and generation goes on; the text runs on unbroken.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from gpt2onnx.runtime import load
from gpt2onnx.runtime.decode_state import SLIDE_KEEP

# Slow tier (pytest -m slow): long generations by design (3,000 and 20,000 tokens).
pytestmark = pytest.mark.slow


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_three_thousand_tokens_past_a_1024_context(exports):
    model = load(exports["tiny"].onnx_dir, provider="cpu")
    n = model.info.n_positions
    assert n == 1024
    prompt = "The window slides along, and the story goes on"
    stream = model.stream(prompt, max_new_tokens=3000, do_sample=True, seed=4, top_k=40, context_overflow="slide")
    deltas = list(stream)
    completion = stream.completion
    assert completion.finish_reason == "length" and len(completion.token_ids) == 3000
    assert "".join(deltas) == completion.text == model.tokenizer.decode(completion.token_ids)  # continuous text

    # The window slid each time the context filled, and each slide is a fresh prompt of its last 3/4:
    g = model.generator(max_new_tokens=1200, do_sample=False, min_new_tokens=1200, context_overflow="slide")
    ids = model.tokenizer.encode(prompt)
    g.append_tokens(ids)
    while g.timing.new_tokens < n - len(ids) + 1:  # up to the token that fills the context
        g.generate_next_token()
    assert g.slides == 0
    after = g.generate_next_token()[0]  # made after the first slide
    assert g.slides == 1
    window = g.sequences[0, : -1][-int(n * SLIDE_KEEP) :].tolist()  # what the slid window holds
    check = model.generator(max_new_tokens=1, do_sample=False)
    check.append_tokens(window)
    assert check.generate_next_token()[0] == after

    # The default policy still stops with "context".
    stopped = model.generate(prompt, max_new_tokens=1100, do_sample=False)
    assert stopped.finish_reason == "context" and len(stopped.token_ids) == n - len(ids) + 1


def test_a_20000_token_soak_keeps_memory_and_speed_flat(exports):
    model = load(exports["tiny"].onnx_dir, provider="cpu", threads=1)
    total, warm = 20_000, 2_000
    g = model.generator(max_new_tokens=total, min_new_tokens=total, do_sample=True, seed=7, top_k=50, context_overflow="slide")
    g.append_tokens(model.tokenizer.encode("A soak test runs for a long time"))
    steps = np.empty(total)  # seconds per token, a slide's re-prefill included
    rss = {}
    last = time.perf_counter()
    for i in range(total):
        g.generate_next_token()
        now = time.perf_counter()
        steps[i], last = now - last, now
        if i + 1 == warm:
            rss["warm"] = rss_bytes()
    rss["end"] = rss_bytes()
    assert g.is_done() and len(g.generated_ids(0)) == total and g.slides > 50
    growth = rss["end"] / rss["warm"] - 1
    early, late = np.median(steps[warm : 2 * warm]), np.median(steps[-warm:])  # medians: this machine is noisy
    print(f"soak: RSS {rss['warm'] / 2**20:.1f} -> {rss['end'] / 2**20:.1f} MiB ({growth:+.2%}); "
          f"tok/s {1 / early:.0f} early, {1 / late:.0f} late; {g.slides} slides")
    assert growth <= 0.05
    assert late <= 1.5 * early
