"""Choosing the next token from logits. Pure functions: logits in, token ids out.

Greedy for now; the decoding issue adds the samplers and beam search.
"""

import numpy as np


def greedy(logits: np.ndarray) -> np.ndarray:
    """The most likely token per row: logits [batch, vocab] -> ids [batch].

    np.argmax takes the first maximum on ties, as torch.argmax does.
    """
    return np.argmax(logits, axis=-1).astype(np.int64)  # [batch]
