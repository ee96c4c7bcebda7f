"""The KV cache of a batch being decoded, in the two layouts an export can have.

Both take new tokens as the searches make them, left-padded (a padded slot has
mask 0), run them through the session and return the logits in that same
left-padded layout [batch, seq, vocab]:

- SharedKVCache (gpt2onnx's GroupQueryAttention graph, the default export): one
  preallocated buffer per layer's keys and values, [batch, n_head, capacity,
  head_dim], bound with onnxruntime's IOBinding as both the past input and the
  present output, so each step writes one slot in place and copies nothing.
  Row r's tokens sit at slots 0 .. length_r - 1: a left-padded prompt is
  right-aligned for the graph and its logits put back. On CUDA the buffers live
  on the device and only the logits come back to the host.
- ConcatKVCache (Optimum's plain graph, e.g. an export made with --graph optimum):
  the graph concatenates past and new keys/values and returns the whole present.
  Position ids count only real tokens (cumsum of the mask - 1), as transformers does.
"""

from __future__ import annotations

import numpy as np

from . import contract
from .errors import UsageError
from .session import DecoderSession, Past


class ConcatKVCache:
    """Past keys/values [batch, n_head, length, head_dim] with their mask and positions."""

    def __init__(self, session: DecoderSession, batch: int):
        self.session = session
        self.past: Past = session.empty_past(batch)
        self.attention_mask = np.zeros((batch, 0), np.int64)  # [batch, length]
        self._next_position = np.zeros((batch, 1), np.int64)  # [batch, 1]

    @property
    def length(self) -> int:
        """Slots held per row, padding included."""
        return self.attention_mask.shape[1]

    def step(self, input_ids: np.ndarray, new_mask: np.ndarray, last_only: bool = False) -> np.ndarray:
        """Run new tokens [batch, seq] (mask [batch, seq], 0 = left padding); return logits [batch, seq, vocab]
        (this graph always computes every position's; last_only is a hint)."""
        mask = np.concatenate([self.attention_mask, new_mask], axis=1)  # [batch, length + seq]
        positions = np.maximum(self._next_position + np.cumsum(new_mask, axis=1) - 1, 0)  # [batch, seq]
        logits, present = self.session.forward(input_ids, mask, positions, self.past)
        self._next_position = mask.sum(axis=1, keepdims=True)  # [batch, 1]
        self.attention_mask = mask
        self.past = present
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        """Make row i hold what row rows[i] held (beam search follows its surviving beams)."""
        self.past = [(key[rows], value[rows]) for key, value in self.past]
        self.attention_mask = self.attention_mask[rows]
        self._next_position = self._next_position[rows]


class SharedKVCache:
    """Keys/values in preallocated buffers that onnxruntime updates in place."""

    def __init__(self, session: DecoderSession, batch: int, capacity: int):
        info = session.info
        self.session, self.capacity = session, capacity
        self.lengths = np.zeros(batch, np.int64)  # [batch]: tokens each row holds
        self.width = 0  # the widest row, padding of the prompt included: the context used
        shape = (batch, info.n_head, capacity, info.head_dim)  # [batch, n_head, capacity, head_dim]
        self._binding = session.io_binding()
        # Logits are bound first so they stay output 0 when rebound with another shape.
        self._binding.bind_output(contract.LOGITS, "cpu")
        self.buffers = []  # (OrtValue, host array or None) per key and value of each layer
        for layer in range(info.n_layer):
            for past, present in zip(contract.past_names(layer), contract.present_names(layer)):
                value, host = session.kv_buffer(shape)  # [batch, n_head, capacity, head_dim]
                self._binding.bind_ortvalue_input(past, value)
                self._binding.bind_ortvalue_output(present, value)
                self.buffers.append((value, host))
        self._decode: dict[str, np.ndarray] | None = None  # one-token steps' inputs, bound once (see _decode_step)
        self._decode_bound = False

    @property
    def length(self) -> int:
        """Slots used per row, the prompt's padding included."""
        return self.width

    def step(self, input_ids: np.ndarray, new_mask: np.ndarray, last_only: bool = False) -> np.ndarray:
        """Run new tokens [batch, seq] (mask [batch, seq], 0 = left padding); return logits [batch, seq, vocab],
        or with last_only [batch, 1, vocab] for the last position (a prefill that only needs the next token)."""
        batch, seq = input_ids.shape
        if seq == 1 and self.width and self.capacity > 1 and bool(new_mask.all()):
            return self._decode_step(input_ids)
        real = new_mask.sum(axis=1)  # [batch]
        padded = bool((real < seq).any())
        if self.width and (padded or (seq > 1 and batch > 1)):
            raise UsageError("a cached step after the prompt takes one token per row, or several in a batch of one")
        self._check_room(seq)
        if padded:  # right-align the left-padded prompt: row r's real tokens to slots 0 .. real_r - 1
            shift = (np.arange(seq)[None, :] + (seq - real)[:, None]) % seq  # [batch, seq]
            input_ids = np.take_along_axis(input_ids, shift, axis=1)
        lengths = self.lengths + real  # [batch]
        width = self.width + seq
        positions = self.lengths[:, None] + np.arange(seq)[None, :]  # [batch, seq]: padding past a row's end is never read
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)  # [batch, width]: its sums are the lengths
        binding = self._binding
        self._decode_bound = False
        binding.bind_cpu_input(contract.INPUT_IDS, np.ascontiguousarray(input_ids, np.int64))
        binding.bind_cpu_input(contract.ATTENTION_MASK, mask)
        binding.bind_cpu_input(contract.POSITION_IDS, np.minimum(positions, self.session.info.n_positions - 1))
        keep = 1 if last_only and not padded else seq  # a padded row's last token is not at the end: keep all
        binding.bind_cpu_input(contract.LOGITS_TO_KEEP, np.array([keep], np.int64))
        logits = self._run(batch, keep)
        self.lengths, self.width = lengths, width
        self._set_mask()  # the one-token steps' mask, if they ran before
        if padded and last_only:  # each row's last real token, right-aligned at real_r - 1
            return logits[np.arange(batch), real - 1][:, None, :]  # [batch, 1, vocab]
        if padded:  # back to the left-padded layout the searches use
            logits = np.take_along_axis(logits, ((np.arange(seq)[None, :] - (seq - real)[:, None]) % seq)[:, :, None], axis=1)
        return logits

    def _check_room(self, seq: int) -> None:
        if int(self.lengths.max()) + seq > self.capacity:
            raise UsageError(f"the KV cache holds {self.capacity} tokens per row: this step needs more")

    def _run(self, batch: int, keep: int) -> np.ndarray:
        """Run the bound inputs; logits [batch, keep, vocab] as float32 (the searches' type)."""
        if keep == 1:  # onnxruntime writes straight into a fresh array: no copy, and earlier logits stay valid
            logits = np.empty((batch, 1, self.session.info.vocab_size), self.session.dtype)  # [batch, 1, vocab]
            self._binding.bind_ortvalue_output(contract.LOGITS, self.session.ortvalue(logits))
            self.session.run_bound(self._binding)
        else:
            self._binding.bind_output(contract.LOGITS, "cpu")
            self.session.run_bound(self._binding)
            logits = self._binding.get_outputs()[0].numpy()  # [batch, keep, vocab]
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)  # float16 exports

    def _decode_step(self, input_ids: np.ndarray) -> np.ndarray:
        """One token per row, the common case: the step's inputs live in arrays bound once and
        updated in place, so a step costs onnxruntime's run and little else. The mask is
        [batch, capacity] wide: for one-token steps the graph only reads its row sums."""
        batch = input_ids.shape[0]
        self._check_room(1)
        if self._decode is None:
            self._decode = {
                contract.INPUT_IDS: np.zeros((batch, 1), np.int64),  # [batch, 1]
                contract.POSITION_IDS: np.zeros((batch, 1), np.int64),  # [batch, 1]
                contract.ATTENTION_MASK: np.zeros((batch, self.capacity), np.int64),  # [batch, capacity]
                contract.LOGITS_TO_KEEP: np.ones(1, np.int64),
            }
            self._decode_values = {name: self.session.ortvalue(array) for name, array in self._decode.items()}
            self._set_mask()
        if not self._decode_bound:
            for name, value in self._decode_values.items():
                self._binding.bind_ortvalue_input(name, value)
            self._decode_bound = True
        d = self._decode
        rows = np.arange(batch)
        d[contract.INPUT_IDS][:, 0] = input_ids[:, 0]
        d[contract.POSITION_IDS][:, 0] = np.minimum(self.lengths, self.session.info.n_positions - 1)
        d[contract.ATTENTION_MASK][rows, self.lengths] = 1  # the new token's slot: row sums become lengths + 1
        logits = self._run(batch, 1)
        self.lengths = self.lengths + 1
        self.width += 1
        return logits

    def _set_mask(self) -> None:
        if self._decode is not None:
            mask = self._decode[contract.ATTENTION_MASK]
            mask[:] = np.arange(self.capacity)[None, :] < self.lengths[:, None]

    def reorder(self, rows: np.ndarray) -> None:
        """Make row i hold what row rows[i] held (beam search follows its surviving beams)."""
        used = int(self.lengths.max())
        for value, host in self.buffers:
            self.session.gather_rows(value, host, rows, used)
        self.lengths = self.lengths[rows]
        self._set_mask()


KVCache = ConcatKVCache | SharedKVCache


def new_cache(session: DecoderSession, batch: int, capacity: int) -> KVCache:
    """The cache for `batch` rows of at most `capacity` tokens each, in the layout the session's graph has."""
    if session.shared_kv:
        return SharedKVCache(session, batch, capacity)
    return ConcatKVCache(session, batch)
