"""The onnxruntime session that runs the exported GPT-2 decoder: one forward
pass over new tokens and the past keys/values. It runs the model and nothing
else; choosing tokens happens elsewhere, and the KV cache (kv_cache.py) decides
what to feed.

Two graph layouts (the manifest's `kv_cache`): "shared", gpt2onnx's
GroupQueryAttention graph, runs through IOBinding on buffers the cache owns
(on the CUDA device when CUDA runs); "concat", Optimum's plain graph, runs with
numpy feeds and returns the whole present.
"""

from __future__ import annotations

import ctypes
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import contract, providers
from .errors import ModelLoadError
from .manifest import ModelInfo

_ORT_TYPES = {"int64": "tensor(int64)", "float32": "tensor(float)", "float16": "tensor(float16)", "int8": "tensor(int8)"}

# A layer's past (key, value): each [batch, n_head, past, head_dim].
Past = list[tuple[np.ndarray, np.ndarray]]


def _return_freed_memory() -> None:
    """Give the heap's free memory back to the OS. Loading parsed the whole model file (the
    weights once more) and freed it, and glibc keeps such memory in its heap: the RSS a load
    added then varied between 1.4x and 1.8x of gpt2's fp32 weights from run to run, 1.36x
    after this. Only glibc has malloc_trim; elsewhere this does nothing."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl and other libcs
            pass


def inference_session(model_path: Path, plan: providers.ProviderPlan, threads: int | None) -> ort.InferenceSession:
    """onnxruntime's session over model_path on the plan's providers; an unreadable graph is a one-line ModelLoadError."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(model_path), options, providers=providers.session_providers(plan))
    except Exception as e:  # onnxruntime raises its own types for unreadable graphs
        raise ModelLoadError(f"onnxruntime cannot load {model_path}: {str(e).splitlines()[0]} (re-export the model)") from None
    _return_freed_memory()
    return session


def check_io(session: ort.InferenceSession, signature: dict, what: str) -> None:
    """Refuse a graph whose input or output names and element types are not the signature's (`what`: the graph it should be)."""
    for kind, got in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        want = {tensor["name"]: _ORT_TYPES.get(tensor["dtype"]) for tensor in signature[kind]}
        have = {tensor.name: tensor.type for tensor in got}
        if want != have:
            wrong = sorted(set(want.items()) ^ set(have.items()))[:3]
            raise ModelLoadError(f"the graph's {kind} do not match {what} (first differences: {wrong}): export it with 'gpt2onnx export'")


def cuda_blocker(info: ModelInfo) -> str | None:
    """Why onnxruntime can't run this export on CUDA, or None. Its GroupQueryAttention has CUDA kernels
    for float16 and bfloat16 only (1.31, like every release before): onnxruntime would run a float32
    or quantized export's attention on the CPU and copy each layer's KV cache across at every step."""
    if info.kv_cache == contract.SHARED_KV and info.dtype != "float16":
        return f"onnxruntime's GroupQueryAttention runs on CUDA in float16 only, and this export is {info.weights}: export with --float16 for CUDA"
    return None


class DecoderSession:
    """An onnxruntime session over model.onnx, checked against the I/O contract."""

    def __init__(self, model_path: Path, info: ModelInfo, provider: str = "auto", threads: int | None = None):
        self.info = info
        plan = providers.plan(provider, cuda_blocker(info))
        self._session = inference_session(model_path, plan, threads)
        # settle's fallback warning (stacklevel 3) points at whoever built this session: call it here.
        self.provider, self.provider_note = providers.settle(plan, self._session.get_providers())
        self._check_signature()
        self.dtype = np.dtype(info.dtype)  # the logits'
        self.kv_dtype = np.dtype(info.kv_dtype)  # the KV cache's: dtype, or int8
        self.shared_kv = info.kv_cache == contract.SHARED_KV  # GroupQueryAttention graph: cache buffers updated in place
        self.device = "cuda" if self.provider == "cuda" else "cpu"  # where the KV buffers live
        self._output_names = contract.output_names(info.n_layer)
        self.run_seconds = 0.0  # time spent inside onnxruntime's run, summed over every call (benchmarks read it)
        self.runs = 0  # calls to onnxruntime's run
        self.threads = threads  # onnxruntime's intra-op threads (None: its default)

    def _check_signature(self) -> None:
        inputs = len(self._session.get_inputs())
        if 2 * self.info.n_layer > inputs:  # before the signature is built: a junk n_layer of 10**9 would fill the memory
            raise ModelLoadError(f"the manifest says n_layer={self.info.n_layer} but the graph has {inputs} inputs: re-export the model")
        signature = contract.io_signature(self.info.n_layer, self.info.dtype, self.info.kv_cache, self.info.kv_dtype, self.info.packed_chunk)
        check_io(self._session, signature, f"a GPT-2 decoder with past for n_layer={self.info.n_layer}")

    def empty_past(self, batch: int) -> Past:
        """A zero-length past for the first step (the "concat" graph)."""
        shape = (batch, self.info.n_head, 0, self.info.head_dim)  # [batch, n_head, 0, head_dim]
        return [(np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)) for _ in range(self.info.n_layer)]

    def forward(
        self,
        input_ids: np.ndarray,  # int64 [batch, seq]
        attention_mask: np.ndarray,  # int64 [batch, past + seq]
        position_ids: np.ndarray,  # int64 [batch, seq]
        past: Past,
    ) -> tuple[np.ndarray, Past]:
        """Run the decoder: logits [batch, seq, vocab] and the present [batch, n_head, past + seq, head_dim]."""
        feeds = {
            contract.INPUT_IDS: input_ids,
            contract.ATTENTION_MASK: attention_mask,
            contract.POSITION_IDS: position_ids,
        }
        for layer, (key, value) in enumerate(past):
            key_name, value_name = contract.past_names(layer)
            feeds[key_name] = np.ascontiguousarray(key)  # a row's past may be a view into a batch's present
            feeds[value_name] = np.ascontiguousarray(value)
        outputs = self._timed(self._session.run, self._output_names, feeds)
        present = list(zip(outputs[1::2], outputs[2::2]))
        return outputs[0], present

    # ----- the "shared" graph: IOBinding on buffers the KV cache owns -----

    def io_binding(self) -> ort.IOBinding:
        """A fresh binding: one per KV cache, so threads sharing the session never share one."""
        return self._session.io_binding()

    def kv_block(self, shape: tuple[int, ...]) -> tuple[ort.OrtValue, np.ndarray | None]:
        """The KV cache's zeroed memory [2 * n_layer, slots, n_head, capacity, head_dim] (each layer's keys,
        then values), where the session computes: (its OrtValue, and on the CPU the numpy array that owns it)."""
        if self.device == "cuda":
            # np.zeros maps the zero page lazily: copying it to the device reads it, so the host never holds the block.
            return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, self.kv_dtype), "cuda", 0), None
        # Written now rather than lazily mapped (np.zeros): the first write to fresh pages costs a page
        # fault each, and a slot that first reaches them mid-generation paid milliseconds per step.
        host = np.empty(shape, self.kv_dtype)
        host.fill(0)
        return ort.OrtValue.ortvalue_from_numpy(host), host

    @property
    def providers(self) -> list[str]:
        """The providers the session runs on, in onnxruntime's order of preference."""
        return self._session.get_providers()

    def run_bound(self, binding: ort.IOBinding) -> None:
        """Run the graph on a binding; outputs land where the binding says."""
        self._timed(self._session.run_with_iobinding, binding)

    def _timed(self, run, *args):
        """onnxruntime's run, counted in run_seconds and runs."""
        start = time.perf_counter()
        try:
            return run(*args)
        finally:
            self.run_seconds += time.perf_counter() - start
            self.runs += 1
