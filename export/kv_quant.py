"""The int8 KV cache's scales: for every layer, one scale per head and channel for the
keys and one for the values, measured by running calibration text through the PyTorch
checkpoint.

GroupQueryAttention keeps an int8 cache with fixed scales (`k_scale`, `v_scale`,
PER_CHANNEL): it writes round(x / scale) and reads q * scale. So the scales are chosen
once, at export, from the largest |key| and |value| each channel reaches on the
calibration text (the packaged assets/calibration.txt, prose, dialogue, numbers and
code, plus the validation prompts), with headroom for text that reaches further.
Values beyond scale * 127 saturate; the quality benchmark measures what that costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_TEXT = Path(__file__).parent / "assets" / "calibration.txt"
HEADROOM = 1.25  # scale = HEADROOM x the largest |value| seen / 127
LEVELS = 127  # int8's largest magnitude
SMALLEST = 1e-8  # scale of a channel that stayed 0 on the calibration text (any scale stores 0 exactly)


def calibration_sequences(encode, n_positions: int, prompts: tuple[str, ...] = ()) -> list[list[int]]:
    """Token sequences to calibrate on: each paragraph and prompt alone (from position 0, where
    GPT-2's activations are largest), and the whole text in windows of n_positions (every position)."""
    text = CALIBRATION_TEXT.read_text(encoding="utf-8")
    pieces = [p for p in text.split("\n\n") if p.strip()] + list(prompts)
    sequences = [encode(p)[:n_positions] for p in pieces]
    whole = encode(text)
    while len(whole) < n_positions:  # the later positions too, on a model with a long context
        whole = whole + whole
    sequences += [whole[i : i + n_positions] for i in range(0, len(whole) - n_positions + 1, n_positions)]
    return [s for s in sequences if s]


def calibrate(checkpoint: Path, sequences: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, (key scales, value scales), each float32 [n_head, head_dim]."""
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    peaks = None  # per layer, [2, n_head, head_dim]: the largest |key| and |value| so far
    with torch.no_grad():
        for ids in sequences:
            cache = model(torch.tensor([ids]), use_cache=True).past_key_values
            layers = [np.stack([cache[i][0][0].abs().amax(dim=1).numpy(), cache[i][1][0].abs().amax(dim=1).numpy()]) for i in range(len(cache))]
            peaks = layers if peaks is None else [np.maximum(a, b) for a, b in zip(peaks, layers)]
    return [tuple(np.maximum(peak * HEADROOM / LEVELS, SMALLEST).astype(np.float32)) for peak in peaks]
