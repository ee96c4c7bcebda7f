"""Moving KV-cache rows where the cache lives. Beam search's reorder and the slot
engine's swaps copy whole rows (a sequence's keys and values) inside the cache's
one block of memory:

- on the CPU, numpy copies the rows in place, only their filled positions;
- on CUDA, a two-node graph (Gather, then ScatterND onto the same memory) copies
  them on the device, so no key or value crosses to the host.

The graphs ship in graphs/ (export/kv_rows_graph.py makes them and says how they
work): the runtime has no onnx package to build one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

GRAPHS = Path(__file__).resolve().parent / "graphs"


def flat_moves(dst: np.ndarray, src: np.ndarray, planes: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The moves that change something, as row numbers of the block viewed as [planes * slots, row]:
    every plane (a layer's keys or values) moves the same slots. (flat_dst [k, 1], flat_src [k])."""
    changed = dst != src
    dst, src = dst[changed], src[changed]  # [moves]
    base = np.arange(planes, dtype=np.int64)[:, None] * slots  # [planes, 1]
    return (base + dst[None, :]).reshape(-1, 1), (base + src[None, :]).reshape(-1)  # [planes * moves, 1], [planes * moves]


class RowMover:
    """Runs the row-moving graph for one cache element type on the decoder's providers."""

    def __init__(self, dtype: np.dtype, providers: list[str], threads: int | None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = GRAPHS / f"kv_rows_{np.dtype(dtype).name}.onnx"
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        self.dtype = np.dtype(dtype)

    def move(self, block: ort.OrtValue, device: str, dst: np.ndarray, src: np.ndarray) -> None:
        """block[:, dst[i]] = block[:, src[i]] in place, for a block [planes, slots, ...] on `device`."""
        planes, slots = block.shape()[:2]
        flat_dst, flat_src = flat_moves(dst, src, planes, slots)
        if not len(flat_src):
            return
        shape = (planes * slots, int(np.prod(block.shape()[2:])))  # [planes * slots, row]: the same memory
        binding = self._session.io_binding()  # per call: threads may share this mover
        binding.bind_input("kv", device, 0, self.dtype, shape, block.data_ptr())
        binding.bind_output("kv_out", device, 0, self.dtype, shape, block.data_ptr())
        binding.bind_cpu_input("src", flat_src)
        binding.bind_cpu_input("dst", flat_dst)
        self._session.run_with_iobinding(binding)


@lru_cache(maxsize=None)
def mover(dtype_name: str, providers: tuple[str, ...], threads: int | None) -> RowMover:
    """The RowMover for a cache element type on these providers, made once per process: most
    runs never move a row on the device, and a beam search per request must not build a session each."""
    return RowMover(np.dtype(dtype_name), list(providers), threads)


def move_host(host: np.ndarray, dst: np.ndarray, src: np.ndarray, used, pool: list[np.ndarray] | None = None) -> None:
    """host[:, dst[i], :, :used[i]] = host[:, src[i], :, :used[i]] for a block [planes, slots, n_head, capacity,
    head_dim] in host memory; `used`: each source's filled positions (or one number for all). Only filled
    positions move, and only a source that another move overwrites is saved first, a plane at a time,
    into `pool`: the caller's buffers [n_head, capacity, head_dim], made (and written) the first time
    they are needed and kept. A fresh temporary of a whole row (66 MB for a 900-token gpt2 row) cost
    page faults for hundreds of milliseconds each time, every stream's wait when a slot swap admits
    a long prompt."""
    used = np.broadcast_to(np.asarray(used, np.int64), np.shape(src))
    changed = dst != src
    moves = [(int(d), int(s), int(n)) for d, s, n in zip(dst[changed], src[changed], used[changed]) if n]
    written = {d for d, _, _ in moves}
    saved = sorted({s: n for _, s, n in moves if s in written}.items())  # sources another move overwrites
    pool = [] if pool is None else pool
    while len(pool) < len(saved):
        buffer = np.empty(host.shape[2:], host.dtype)  # [n_head, capacity, head_dim]
        buffer.fill(0)  # its pages, once
        pool.append(buffer)
    for plane in host:  # [slots, n_head, capacity, head_dim]
        copies = {s: pool[i][:, :n] for i, (s, n) in enumerate(saved)}
        for s, copy in copies.items():
            copy[...] = plane[s, :, : copy.shape[1]]
        for d, s, n in moves:
            plane[d, :, :n] = copies[s] if s in copies else plane[s, :, :n]
