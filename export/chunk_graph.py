"""The decoder graph's second part (fast_graph.build's packed_chunk): one prompt
chunk on a row of its own, run in the same pass as the rows' tokens, so a slot
engine step that decodes every busy row and prefills a chunk of a new prompt
reads the weights once.
"""

from __future__ import annotations

import numpy as np

from gpt2onnx.runtime import contract


class Chunk:
    """The graph's second part: one prompt chunk [1, chunk] on a row of its own, beside the rows'
    tokens [batch, seq], in the same pass (contract.CHUNK_*). The rows' and the chunk's tokens go
    through every MatMul as one [batch * seq + chunk, n_embd] matrix, so a step that decodes the busy
    rows and prefills a chunk of a new prompt reads the weights once, as llama.cpp's update_slots
    does. Only attention runs apart: onnxruntime's GroupQueryAttention (1.31) takes one sequence
    length per batch and refuses several rows of several tokens after a past, so each part has its
    own node. The rows' part is never empty (a pass without decode rows runs its prompt there); the
    chunk may be, and its attention then runs one padding token on a scratch row (kv_cache.py).
    The chunk's row needs room for one token more than it holds after the pass."""

    def __init__(self, b, wte: str, wpe: str, n_embd: int, rows: str):
        from onnx import TensorProto

        # The packed tokens stay 3-D, [1, batch * seq + chunk, n_embd]: onnxruntime's optimizer fuses
        # residual Adds and LayerNorms into SkipLayerNormalization on 3-D tensors only.
        self.b = b
        self.flat = b.weight("/chunk/flat", np.array([1, -1, n_embd], np.int64))
        one = b.weight("/chunk/one", np.array([1], np.int64))
        self.axis1 = one
        chunk = b.one("Add", b.one("Gather", wte, contract.CHUNK_IDS), b.one("Gather", wpe, contract.CHUNK_POSITION_IDS))  # [1, chunk, n_embd]
        self.hidden = b.one("Concat", b.one("Reshape", rows, self.flat), chunk, axis=1)  # [1, batch * seq + chunk, n_embd]
        self.ids_shape = b.one("Shape", contract.INPUT_IDS)  # [2]: batch, seq
        self.chunk_tokens = b.one("Gather", b.one("Shape", contract.CHUNK_IDS), one, axis=0)  # [1]
        self.split = b.one("Concat", b.one("ReduceProd", self.ids_shape, keepdims=1), self.chunk_tokens, axis=0)  # [2]: row tokens, chunk tokens
        self.qkv_shape = b.one("Concat", self.ids_shape, b.weight("/chunk/qkv", np.array([3 * n_embd], np.int64)), axis=0)  # [3]
        self.hidden_shape = b.one("Concat", self.ids_shape, b.weight("/chunk/embd", np.array([n_embd], np.int64)), axis=0)  # [3]
        # The chunk's attention runs one padding token after it (see attention): the row's length counts it.
        lengths = b.one("ReduceSum", contract.CHUNK_ATTENTION_MASK, one, keepdims=0)  # [1]: the row's tokens after the step
        self.seqlens_k = b.one("Cast", lengths, to=TensorProto.INT32)  # [1]: with the padding token, minus one
        width = b.one("Gather", b.one("Shape", contract.CHUNK_ATTENTION_MASK), b.weight("/chunk/axis1s", np.array(1, np.int64)), axis=0)
        self.total = b.one("Cast", b.one("Add", width, b.weight("/chunk/one_s", np.array(1, np.int64))), to=TensorProto.INT32)  # scalar
        self.zero = b.weight("/chunk/zero", np.array([0], np.int64))
        # [1, 1, 3 n_embd]: zero query, key and value (made from a 1-D constant: the builder keeps arrays
        # of rank 2 and more without their bytes until after the optimizer, which reads this one's)
        self.pad = b.one("Unsqueeze", b.weight("/chunk/pad", np.zeros(3 * n_embd, np.float32)), b.weight("/chunk/axes01", np.array([0, 1], np.int64)))

    def attention(self, layer: int, rows_inputs: list[str], gqa: dict) -> str:
        """Layer `layer`'s attention for both parts: rows_inputs are the rows' GroupQueryAttention
        inputs with the whole packed QKV [1, batch * seq + chunk, 3 n_embd] first; returns [1, batch * seq + chunk, n_embd]."""
        b = self.b
        rows_qkv, chunk_qkv = b.op("Split", [rows_inputs[0], self.split], 2, axis=1)  # [1, batch * seq, 3 n_embd], [1, chunk, 3 n_embd]
        rows_inputs = [b.one("Reshape", rows_qkv, self.qkv_shape), *rows_inputs[1:]]  # [batch, seq, 3 n_embd]
        rows = b.op("GroupQueryAttention", rows_inputs, [f"/h.{layer}/attn", *contract.present_names(layer)], **gqa)[0]  # [batch, seq, n_embd]
        # GroupQueryAttention fails on zero tokens, and a pass without a chunk must not pay a token in
        # every MatMul for it: the chunk's attention alone gets one zero token after the chunk, written
        # past the row's length (so never read) and dropped from its output.
        padded = b.one("Concat", chunk_qkv, self.pad, axis=1)  # [1, chunk + 1, 3 n_embd]
        chunk_inputs = [padded, "", "", *contract.chunk_past_names(layer), self.seqlens_k, self.total, *rows_inputs[7:]]
        chunk = b.op("GroupQueryAttention", chunk_inputs, [f"/h.{layer}/chunk_attn", *contract.chunk_present_names(layer)], **gqa)[0]  # [1, chunk + 1, n_embd]
        chunk = b.one("Slice", chunk, self.zero, self.chunk_tokens, self.axis1)  # [1, chunk, n_embd]
        return b.one("Concat", b.one("Reshape", rows, self.flat), chunk, axis=1)

    def kept(self, hidden: str, start: str, end: str) -> str:
        """The positions that get logits: each row's last logits_to_keep (start: minus that), then the
        chunk's last chunk_logits_to_keep; [1, batch * logits_to_keep + chunk_logits_to_keep, n_embd]."""
        b = self.b
        rows, chunk = b.op("Split", [hidden, self.split], 2, axis=1)  # [1, batch * seq, n_embd], [1, chunk, n_embd]
        rows = b.one("Slice", b.one("Reshape", rows, self.hidden_shape), start, end, self.axis1)  # [batch, keep, n_embd]
        self.kept_shape = b.one("Shape", rows)  # [3]: batch, keep, n_embd
        rows = b.one("Reshape", rows, self.flat)  # [1, batch * keep, n_embd]
        chunk = b.one("Slice", chunk, b.one("Sub", self.chunk_tokens, contract.CHUNK_LOGITS_TO_KEEP), end, self.axis1)  # [1, chunk_keep, n_embd]
        kept_rows = b.one("Gather", b.one("Shape", rows), self.axis1, axis=0)  # [1]
        self.logit_split = b.one("Concat", kept_rows, contract.CHUNK_LOGITS_TO_KEEP, axis=0)  # [2]
        return b.one("Concat", rows, chunk, axis=1)

    def logits(self, logits: str, vocab_size: int) -> None:
        """Split the output layer's [1, batch * keep + chunk_keep, vocab] into the graph's two logits outputs."""
        b = self.b
        rows = b.op("Split", [logits, self.logit_split], [f"{logits}/rows", contract.CHUNK_LOGITS], axis=1)[0]  # [1, batch * keep, vocab]
        two = b.weight("/chunk/two", np.array([2], np.int64))
        shape = b.one("Concat", b.one("Slice", self.kept_shape, self.zero, two), b.weight("/chunk/vocab", np.array([vocab_size], np.int64)), axis=0)  # [3]
        b.op("Reshape", [rows, shape], [contract.LOGITS])  # [batch, keep, vocab]
