"""The KV cache of a batch being decoded: each layer's past keys/values, the
attention mask over them and each row's next position id.

Rows are left-padded: a padded slot has mask 0, and position ids count only
real tokens (cumsum of the mask - 1), as transformers does.
"""

from __future__ import annotations

import numpy as np

from .session import Past


class KVCache:
    """Past keys/values [batch, n_head, length, head_dim] with their mask and positions."""

    def __init__(self, past: Past):
        batch = past[0][0].shape[0]
        self.past = past
        self.attention_mask = np.zeros((batch, 0), np.int64)  # [batch, length]
        self._next_position = np.zeros((batch, 1), np.int64)  # [batch, 1]

    @property
    def length(self) -> int:
        """Slots held per row, padding included."""
        return self.attention_mask.shape[1]

    def inputs_for(self, new_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The attention mask [batch, length + seq] and position ids [batch, seq] for new tokens.

        `new_mask` [batch, seq] is 1 for real tokens and 0 for left padding.
        """
        mask = np.concatenate([self.attention_mask, new_mask], axis=1)  # [batch, length + seq]
        positions = self._next_position + np.cumsum(new_mask, axis=1) - 1  # [batch, seq]
        return mask, np.maximum(positions, 0)

    def advance(self, mask: np.ndarray, present: Past) -> None:
        """Take the step's full mask [batch, length + seq] and the graph's present as the new past."""
        self._next_position = mask.sum(axis=1, keepdims=True)  # [batch, 1]
        self.attention_mask = mask
        self.past = present
