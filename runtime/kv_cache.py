"""The KV cache: N slots (rows), each holding one sequence's keys and values, in
the two layouts an export can have. Searches and the slot engine ask it to
prefill one row, run one token on many rows, and copy, reorder or swap rows;
it runs the session and hands back logits. It never chooses a token.

Each row remembers the token ids its keys and values came from (`held`, in
slots.py, which also lends rows out and keeps the busy ones first), so a
new prompt that starts with them reuses that prefix and prefills only the rest
(`common_prefix`), as llama.cpp's server does with `cache_prompt`.

- SharedKVCache (gpt2onnx's GroupQueryAttention graph, the default export): one
  preallocated block holding each layer's keys and values, [2 * n_layer, slots,
  n_head, capacity, head_dim]; each layer's part is bound with onnxruntime's
  IOBinding as both the past input and the present output, so each step writes
  one slot in place and copies nothing.
  Row r's tokens sit at positions 0 .. lengths[r] - 1; the mask's row sums tell
  the graph each row's length. A decode step runs rows 0 .. n - 1 (the slot
  engine keeps the busy rows there); a prefill binds one row's memory alone.
  On CUDA the block lives on the device and only the logits come back; row
  moves (beams, slot swaps) run on the device too (kv_rows.py).
  An export with the graph's chunk part (the manifest's `packed_chunk`) runs a
  prompt chunk on one row beside the decode rows in one pass: `ride` gives the
  decode rows to the next prefill, `unride` hands their logits back.
- ConcatKVCache (Optimum's plain graph, an export made with --graph optimum):
  concat_cache.py.
"""

from __future__ import annotations

import time

import numpy as np

from . import contract, kv_rows
from .concat_cache import ConcatKVCache
from .session import DecoderSession
from .slots import Rows


class SharedKVCache(Rows):
    """Keys/values in preallocated buffers that onnxruntime updates in place."""

    def __init__(self, session: DecoderSession, slots: int, capacity: int):
        super().__init__(slots, capacity)
        info = self.info = session.info
        self.session = session
        shape = (2 * info.n_layer, slots, info.n_head, capacity, info.head_dim)  # [2 * n_layer, slots, n_head, capacity, head_dim]
        # One block for every layer, so one call moves a row's keys and values in all of them (kv_rows.py).
        self.block, self._host = session.kv_block(shape)  # OrtValue; on the CPU also the numpy array that owns it
        self._row_bytes = int(np.prod(shape[2:])) * session.kv_dtype.itemsize
        plane_bytes = slots * self._row_bytes
        # Per layer's key, then value: (address, host view [slots, n_head, capacity, head_dim] or None on the device).
        self.buffers = [(self.block.data_ptr() + i * plane_bytes, None if self._host is None else self._host[i]) for i in range(shape[0])]
        # One-token steps' inputs live in arrays bound once per batch size and updated in place.
        self._ids = np.zeros((slots, 1), np.int64)  # [slots, 1]
        self._positions = np.zeros((slots, 1), np.int64)  # [slots, 1]
        self._mask = np.zeros((slots, capacity), np.int64)  # [slots, capacity]: row sums are the lengths
        self._keep = np.ones(1, np.int64)
        self._decode = session.io_binding()
        self._decode_rows = (0, 0)  # (first row, rows) the decode binding is bound for
        self._decode_logits = np.zeros((slots, 1, info.vocab_size), session.dtype)  # [slots, 1, vocab]: bound with it
        self._prefill = session.io_binding()
        self._move_pool: list[np.ndarray] = []  # move_host's buffers, kept (host caches)
        self.packs = info.packed_chunk  # the graph runs a prompt chunk beside the decode rows (ride)
        self._rider: tuple[np.ndarray, np.ndarray] | None = None  # decode rows and tokens the next prefill carries
        self._ridden: np.ndarray | None = None  # their logits, once a prefill carried them
        self.carry_seconds = 0.0  # how long the last carrying pass ran
        if self.packs:
            # A pass with no chunk binds the chunk part to this scratch row [2 * n_layer, 1, n_head, 1, head_dim] (its padding token's room).
            self._scratch, _ = session.kv_block((2 * info.n_layer, 1, info.n_head, 1, info.head_dim))
            self._no_logits = np.zeros((1, 0, info.vocab_size), session.dtype)  # [1, 0, vocab]: the scratch token's (none)
            self._packed = session.io_binding()
            for binding in (self._decode, self._prefill):
                self._bind_no_chunk(binding)

    def _bind_kv(self, binding, first: int, rows: int) -> None:
        """Bind rows first .. first + rows - 1 of every buffer as both past and present."""
        shape = (rows, self.info.n_head, self.capacity, self.info.head_dim)
        names = [n for layer in range(self.info.n_layer) for n in zip(contract.past_names(layer), contract.present_names(layer))]
        for (past, present), (address, _) in zip(names, self.buffers):
            pointer = address + first * self._row_bytes
            binding.bind_input(past, self.session.device, 0, self.session.kv_dtype, shape, pointer)
            binding.bind_output(present, self.session.device, 0, self.session.kv_dtype, shape, pointer)

    def _bind_chunk_kv(self, binding, addresses: list[int], capacity: int) -> None:
        """Bind the chunk part's past and present, each layer's key then value, to one row at `addresses`."""
        shape = (1, self.info.n_head, capacity, self.info.head_dim)
        names = [n for layer in range(self.info.n_layer) for n in zip(contract.chunk_past_names(layer), contract.chunk_present_names(layer))]
        for (past, present), pointer in zip(names, addresses):
            binding.bind_input(past, self.session.device, 0, self.session.kv_dtype, shape, pointer)
            binding.bind_output(present, self.session.device, 0, self.session.kv_dtype, shape, pointer)

    def _bind_no_chunk(self, binding) -> None:
        """A pass without a prompt chunk: an empty chunk on the scratch row, no logits."""
        plane = self.info.n_head * self.info.head_dim * self.session.kv_dtype.itemsize  # one position of one row
        self._bind_chunk_kv(binding, [self._scratch.data_ptr() + i * plane for i in range(2 * self.info.n_layer)], 1)
        empty = np.zeros((1, 0), np.int64)  # [1, 0]: no tokens (the graph's attention still runs its padding token on the scratch row)
        for name, value in ((contract.CHUNK_IDS, empty), (contract.CHUNK_POSITION_IDS, empty), (contract.CHUNK_ATTENTION_MASK, empty), (contract.CHUNK_LOGITS_TO_KEEP, np.zeros(1, np.int64))):
            binding.bind_cpu_input(name, value)
        binding.bind_output(contract.CHUNK_LOGITS, "cpu", 0, self.session.dtype, (1, 0, self.info.vocab_size), self._no_logits.ctypes.data)

    def _run(self, binding, rows: int, keep: int) -> np.ndarray:
        """Run the bound inputs; logits [rows, keep, vocab] as float32, written straight into a fresh array."""
        logits = np.empty((rows, keep, self.info.vocab_size), self.session.dtype)  # [rows, keep, vocab]
        binding.bind_output(contract.LOGITS, "cpu", 0, self.session.dtype, logits.shape, logits.ctypes.data)
        self.session.run_bound(binding)
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)  # float16 exports

    def prefill(self, row: int, ids: list[int], start: int = 0, last_only: bool = True) -> np.ndarray:
        """Run `ids` on row `row` after its first `start` tokens, in that row's own memory:
        logits [len(ids), vocab] (or [1, vocab] with last_only). The other rows are untouched."""
        seq = len(ids)
        self._check_room(row, start, seq)
        if self._rider is not None and last_only:
            last = self._carry(row, ids, start)
            if last is not None:
                return last
        binding = self._prefill
        self._bind_kv(binding, row, 1)
        keep = 1 if last_only else seq
        binding.bind_cpu_input(contract.INPUT_IDS, np.array([ids], np.int64))
        binding.bind_cpu_input(contract.ATTENTION_MASK, np.ones((1, start + seq), np.int64))
        positions = np.minimum(np.arange(start, start + seq), self.info.n_positions - 1)[None, :]  # [1, seq]
        binding.bind_cpu_input(contract.POSITION_IDS, positions.astype(np.int64))
        binding.bind_cpu_input(contract.LOGITS_TO_KEEP, np.array([keep], np.int64))
        logits = self._run(binding, 1, keep)[0]
        self._after_prefill(row, ids, start)
        self._mask[row] = np.arange(self.capacity) < self.lengths[row]
        return logits

    def decode(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """One token per row: tokens [n] on rows [n]; logits [n, vocab], valid until the next decode (they
        may be the buffer the binding writes: no copy per step). Rows 0 .. n - 1 (the busy rows, in any
        order) run as one batch; other sets run as one batch per contiguous run of rows."""
        n = len(rows)
        if n == 1:  # one sequence (the CLI, the app): scalar updates, no fancy indexing
            row, length = int(rows[0]), int(self.lengths[rows[0]])
            if length >= self.capacity:
                raise RuntimeError(f"KV cache row {row} holds {length} of {self.capacity} tokens: no room to decode")
            self._ids[row, 0], self._positions[row, 0], self._mask[row, length] = tokens[0], min(length, self.info.n_positions - 1), 1
            logits = self._decode_run(row, 1)
            self.held[row].append(int(tokens[0]))
            self.lengths[row] += 1
            return logits
        lengths = self.lengths[rows]  # [n]
        if int(lengths.max()) >= self.capacity:
            raise RuntimeError(f"KV cache rows {rows.tolist()} hold {lengths.tolist()} of {self.capacity} tokens: no room to decode")
        self._ids[rows, 0] = tokens
        self._positions[rows, 0] = np.minimum(lengths, self.info.n_positions - 1)
        self._mask[rows, lengths] = 1  # the new token's slot: row sums become lengths + 1
        first = int(rows.min())
        if int(rows.max()) - first + 1 == n:  # one contiguous run (rows are distinct): the busy rows, the usual case
            logits = self._decode_run(first, n)  # [n, vocab], rows in ascending order
            ordered = bool((rows[1:] > rows[:-1]).all())
            logits = logits if ordered else logits[rows - first]
        else:
            ordered = np.sort(rows)  # [n]
            runs = np.split(ordered, np.flatnonzero(np.diff(ordered) != 1) + 1)
            # Each run's logits are a view of the one buffer the next run writes: copy them as they come.
            logits = np.concatenate([self._decode_run(int(run[0]), len(run)).copy() for run in runs])[np.searchsorted(ordered, rows)]
        self._after_decode(rows, tokens)
        return logits

    def _decode_run(self, first: int, n: int) -> np.ndarray:
        """Rows first .. first + n - 1, one token each: logits [n, vocab]. The binding is kept while the
        rows stay the same, so a step costs onnxruntime's run and little else."""
        if self._decode_rows != (first, n):
            self._bind_decode_rows(self._decode, first, n)
            self._decode_rows = (first, n)
        self.session.run_bound(self._decode)
        logits = self._decode_logits[:n, 0]  # [n, vocab]: a view, valid until the next decode writes the buffer
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)  # float16 exports

    def _bind_decode_rows(self, binding, first: int, n: int) -> None:
        """Bind rows first .. first + n - 1 for one token each: their KV, the step arrays' rows and the decode logits buffer."""
        self._bind_kv(binding, first, n)
        for name, array in ((contract.INPUT_IDS, self._ids), (contract.POSITION_IDS, self._positions), (contract.ATTENTION_MASK, self._mask)):
            pointer = array.ctypes.data + first * array.strides[0]
            binding.bind_input(name, "cpu", 0, np.int64, (n, *array.shape[1:]), pointer)
        binding.bind_cpu_input(contract.LOGITS_TO_KEEP, self._keep)
        logits = self._decode_logits[:n]  # [n, 1, vocab]
        binding.bind_output(contract.LOGITS, "cpu", 0, self.session.dtype, logits.shape, logits.ctypes.data)

    # ----- a prompt chunk beside the decode rows, in one pass (the graph's packed_chunk part) -----

    def ride(self, rows: np.ndarray, tokens: np.ndarray) -> bool:
        """Let the next prefill carry one decode token for each of these rows (as `decode` would run them),
        in the same pass; `unride` then hands their logits back. False when this cache can't: a graph
        without the chunk part, or rows that are not one contiguous run."""
        if not self.packs or int(rows.max()) - int(rows.min()) + 1 != len(rows):
            return False
        self._rider, self._ridden = (rows, tokens), None
        return True

    def unride(self) -> np.ndarray | None:
        """The carried rows' logits [n, vocab] if a prefill ran them since `ride` (else None: decode them
        now); valid until the next decode, as decode's."""
        logits, self._rider, self._ridden = self._ridden, None, None
        return logits

    def _carry(self, row: int, ids: list[int], start: int) -> np.ndarray | None:
        """Run the rider's decode rows and `ids` on row `row` after its first `start` tokens, in one
        pass: the chunk's last logits [1, vocab] (the rows' wait in _ridden); None if it can't (the row is
        one of them, or the chunk fills the row: the graph's padding token needs one more position)."""
        rows, tokens = self._rider
        first, n = int(rows.min()), len(rows)
        if first <= row < first + n or start + len(ids) >= self.capacity:  # (the graph's padding token needs one more position)
            return None
        lengths = self.lengths[rows]  # [n]
        if int(lengths.max()) >= self.capacity:
            raise RuntimeError(f"KV cache rows {rows.tolist()} hold {lengths.tolist()} of {self.capacity} tokens: no room to decode")
        self._rider = None
        self._ids[rows, 0] = tokens
        self._positions[rows, 0] = np.minimum(lengths, self.info.n_positions - 1)
        self._mask[rows, lengths] = 1
        binding = self._packed
        self._bind_decode_rows(binding, first, n)
        self._bind_chunk_kv(binding, [address + row * self._row_bytes for address, _ in self.buffers], self.capacity)
        positions = np.minimum(np.arange(start, start + len(ids)), self.info.n_positions - 1)[None, :]  # [1, chunk]
        for name, value in ((contract.CHUNK_IDS, np.array([ids], np.int64)), (contract.CHUNK_POSITION_IDS, positions.astype(np.int64)),
                            (contract.CHUNK_ATTENTION_MASK, np.ones((1, start + len(ids)), np.int64)), (contract.CHUNK_LOGITS_TO_KEEP, self._keep)):
            binding.bind_cpu_input(name, value)
        last = np.empty((1, 1, self.info.vocab_size), self.session.dtype)  # [1, 1, vocab]
        binding.bind_output(contract.CHUNK_LOGITS, "cpu", 0, self.session.dtype, last.shape, last.ctypes.data)
        started = time.perf_counter()
        self.session.run_bound(binding)
        self.carry_seconds = time.perf_counter() - started
        self._after_decode(rows, tokens)
        self._after_prefill(row, ids, start)
        self._mask[row] = np.arange(self.capacity) < self.lengths[row]
        logits = self._decode_logits[:n, 0]  # [n, vocab], rows in ascending order
        logits = logits if bool((rows[1:] > rows[:-1]).all()) else logits[rows - first]
        self._ridden = logits if logits.dtype == np.float32 else logits.astype(np.float32)
        return last[0] if last.dtype == np.float32 else last[0].astype(np.float32)

    def _after_rewind(self, row: int) -> None:
        self._mask[row] = np.arange(self.capacity) < self.lengths[row]

    def reorder(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Rows dst[i] hold what rows src[i] held, in place (beam search follows its surviving beams)."""
        if self._host is not None:  # numpy, in place, each source's filled positions only
            kv_rows.move_host(self._host, dst, src, self.lengths[src], self._move_pool)
        else:  # on the device, by the row-moving graph: no key or value crosses to the host
            kv_rows.mover(self.session.kv_dtype.name, tuple(self.session.providers), self.session.threads).move(self.block, self.session.device, dst, src)
        self._move_rows(dst, src)
        self._mask[dst] = self._mask[src]


KVCache = ConcatKVCache | SharedKVCache


def new_cache(session: DecoderSession, slots: int, capacity: int) -> KVCache:
    """A cache of `slots` rows of at most `capacity` tokens each, in the layout the session's graph has."""
    capacity = max(1, min(capacity, session.info.n_positions))
    if session.shared_kv:
        return SharedKVCache(session, slots, capacity)
    return ConcatKVCache(session, slots, capacity)


def stepped_logits(session: DecoderSession, ids: list[int], prefill: int) -> np.ndarray:
    """Logits [len(ids), vocab]: the first `prefill` ids in one pass, then one cached step per id
    (how export validation and the parity tests check the cache against a full forward pass)."""
    cache = new_cache(session, 1, len(ids))
    first = cache.prefill(0, ids[:prefill], 0, last_only=False)  # [prefill, vocab]
    steps = [cache.decode(np.zeros(1, np.int64), np.array([t], np.int64)).copy() for t in ids[prefill:]]  # each [1, vocab]
    return np.concatenate([first, *steps])
