"""The decoder graph gpt2onnx runs: GPT-2 rebuilt around onnxruntime's
GroupQueryAttention, with the KV cache in one preallocated buffer per layer
that onnxruntime updates in place.

Optimum's graph concatenates the whole past with the new keys and values at
every step, so each token copies the cache and per-token latency grows with the
context. GroupQueryAttention (a `com.microsoft` contrib op) takes a past buffer
of capacity `max_sequence_length`; when the caller binds the same buffer as the
`present` output, the op writes the new keys/values into it at each row's own
length and attends over that length only (onnxruntime-genai runs its models
this way). The weights come from Optimum's validated export, read by
GPT-2's own parameter names; the rest of the graph follows GPT2LMHeadModel
op for op, and onnxruntime's transformer optimizer then fuses LayerNorm+Add and
the tanh GELU into its contrib kernels.

The I/O names stay Optimum's (gpt2onnx.runtime.contract). What changes:
- past_key_values.{i}.key|value and present.{i}.key|value are the same buffer,
  [batch, n_head, max_sequence_length, head_dim];
- attention_mask [batch, total_sequence_length] only says how many tokens each
  row holds (its sum): row r's keys/values sit at slots 0 .. sum_r - 1, so a
  batch's prompts are right-padded (the runtime's KV cache does this);
- one more input, logits_to_keep (transformers' name): logits come for the last
  k positions only, so a prefill computes one row of logits instead of seq rows.

Left out on purpose: checkpoints this graph can't express (an activation it doesn't
build, head_dim not a multiple of 8) keep Optimum's graph; `supports` says why.
reorder_and_upcast_attn needs nothing: it computes the attention scores in float32
with the scale folded in first, which a float32 graph does anyway.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gpt2onnx.runtime import contract

from . import gpt1
from .chunk_graph import Chunk

MS_DOMAIN = "com.microsoft"
IR_VERSION = 10  # what onnxruntime 1.2x-1.31 reads (onnx 1.23 would write 14 for opset 18)
# Activations the graph builds, by transformers' names (config.json's `activation_function`;
# GPT-1's `afn` through gpt1.activation).
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
ERF_GELU = ("gelu", "gelu_python")
SIGMOID_GATED = {"silu": 1.0, "swish": 1.0, "quick_gelu": 1.702}  # x * sigmoid(k x)
ACTIVATIONS = (*TANH_GELU, *ERF_GELU, *SIGMOID_GATED, "relu")


def supports(config: dict) -> str | None:
    """None when the GroupQueryAttention graph can express this GPT-2 config, else why not."""
    head_dim = config["n_embd"] // config["n_head"]
    if head_dim % 8:
        return f"head_dim {head_dim} is not a multiple of 8 (GroupQueryAttention needs that)"
    activation = gpt1.activation(config)
    if activation not in ACTIVATIONS:
        return f"activation_function {activation!r} is not built"
    return None


def read_weights(optimum_model: Path) -> dict[str, np.ndarray]:
    """Every weight of Optimum's GPT-2 graph by its PyTorch name (transformer.h.0.attn.c_attn.weight, ...).

    The exporter folds equal tensors into one initializer and names the others
    through Identity nodes; following those gives each parameter its own name back.
    Tensors in an external data file (models over 2 GB) are read straight into their
    arrays: loaded into the proto first, they were held twice (gpt2-large: 6 GB for 3 GB).
    """
    import onnx
    from onnx import external_data_helper, helper, numpy_helper

    model = onnx.load(str(optimum_model), load_external_data=False)
    weights = {}
    for tensor in model.graph.initializer:
        if external_data_helper.uses_external_data(tensor):
            info = external_data_helper.ExternalDataInfo(tensor)
            dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
            count = int(np.prod(tensor.dims))
            array = np.fromfile(optimum_model.parent / info.location, dtype, count, offset=info.offset or 0)
            weights[tensor.name] = array.reshape(tuple(tensor.dims))
        else:
            weights[tensor.name] = numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
        elif node.op_type == "Constant" and node.output[0].startswith("transformer."):
            weights[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    # The output layer: a tied one reads wte through a Transpose; an untied one (tie_word_embeddings
    # false) is its own initializer, stored transposed under a name torch made up (onnx::MatMul_N).
    for node in model.graph.node:
        if contract.LOGITS in node.output and node.input[1] in weights:
            weights["lm_head.weight"] = weights.pop(node.input[1]).T  # [vocab, n_embd]
    return weights


class _Builder:
    """Collects nodes and initializers; names every intermediate tensor once.

    Weight matrices (rank >= 2) go into the graph as names, dims and dtype only, their
    arrays kept in `matrices`: onnxruntime's optimizer copies the graph several times
    while fusing, and gpt2-large's 3 GB of weights were copied with it."""

    def __init__(self, graph):
        self.graph, self.nodes, self._count = graph, [], 0
        self.matrices: dict[str, np.ndarray] = {}  # name -> array, for attach_matrices

    def weight(self, name: str, array: np.ndarray) -> str:
        from onnx import helper, numpy_helper

        if array.ndim >= 2:
            tensor = self.graph.initializer.add(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype))
            tensor.dims.extend(array.shape)
            self.matrices[name] = array
        else:  # (ascontiguousarray makes a scalar [1], as the graph has always had it)
            self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs) -> list[str]:
        from onnx import helper

        self._count += 1
        if isinstance(outputs, int):
            outputs = [f"/{op_type.lower()}_{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"/{op_type}_{self._count}", domain=domain, **attrs))
        return outputs

    def one(self, op_type: str, *inputs: str, domain: str = "", **attrs) -> str:
        return self.op(op_type, list(inputs), 1, domain, **attrs)[0]


def _activation(b: _Builder, x: str, activation: str) -> str:
    """The MLP's activation, written as transformers computes it (the optimizer fuses the GELUs)."""
    if activation == "relu":
        return b.one("Relu", x)
    if activation in SIGMOID_GATED:
        k = SIGMOID_GATED[activation]
        gate = b.one("Sigmoid", b.one("Mul", x, b.weight(f"{x}/k", np.array(k, np.float32))) if k != 1.0 else x)
        return b.one("Mul", x, gate)
    if activation in ERF_GELU:  # 0.5 x (1 + erf(x / sqrt 2))
        scaled = b.one("Div", x, b.weight(f"{x}/sqrt2", np.array(math.sqrt(2.0), np.float32)))
        erf = b.one("Add", b.one("Erf", scaled), b.weight(f"{x}/one", np.array(1.0, np.float32)))
        return b.one("Mul", b.one("Mul", x, erf), b.weight(f"{x}/half", np.array(0.5, np.float32)))
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    cube = b.one("Pow", x, b.weight(f"{x}/three", np.array(3.0, np.float32)))
    inner = b.one("Add", x, b.one("Mul", cube, b.weight(f"{x}/c", np.array(0.044715, np.float32))))
    tanh = b.one("Tanh", b.one("Mul", inner, b.weight(f"{x}/k", np.array(math.sqrt(2.0 / math.pi), np.float32))))
    one_plus = b.one("Add", tanh, b.weight(f"{x}/one", np.array(1.0, np.float32)))
    return b.one("Mul", b.one("Mul", x, b.weight(f"{x}/half", np.array(0.5, np.float32))), one_plus)


def build(weights: dict[str, np.ndarray], config: dict, lm_head_transposed: bool = False, kv_scales: list | None = None, packed_chunk: bool = True):
    """The GroupQueryAttention decoder as an onnx ModelProto (float32) without the bytes of
    its weight matrices, and those matrices by initializer name (see attach_matrices).

    lm_head_transposed: store the output layer as its own [n_embd, vocab] weight (for
    int8 and int4: the quantizers only quantize MatMuls whose weight is an initializer);
    otherwise it reads the tied wte through a Transpose, so the file holds wte once.

    kv_scales: per layer, (key scales, value scales) [n_head, head_dim] (kv_quant.py): the
    KV cache is then int8, one fixed scale per head and channel, which GroupQueryAttention
    applies as it writes and reads the cache (a quarter of float32's bytes to read per step).

    packed_chunk: the graph also runs one prompt chunk on one more row in the same pass (chunk_graph.py).

    It consumes `weights`: each array leaves the dict as it becomes an initializer.
    """
    from onnx import TensorProto, helper

    n_layer, n_head, n_embd = config["n_layer"], config["n_head"], config["n_embd"]
    head_dim = n_embd // n_head
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    activation = gpt1.activation(config)
    post_ln = config.get("model_type") == "openai-gpt"  # GPT-1: LayerNorm after each residual sum, none at the end
    model = helper.make_model(
        helper.make_graph([], "gpt2_gqa", [], []),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="gpt2onnx",
        ir_version=IR_VERSION,
    )
    b = _Builder(model.graph)
    w = lambda name: b.weight(name, weights.pop(name))  # noqa: E731 - a GPT-2 parameter by its name
    wte_array = weights["transformer.wte.weight"]

    # How many tokens each row holds after this step, and the widest row: GroupQueryAttention's
    # seqlens_k (= length - 1) and total_sequence_length, both int32.
    one = b.weight("/const/one", np.array([1], np.int64))
    lengths = b.one("ReduceSum", contract.ATTENTION_MASK, one, keepdims=0)  # [batch]
    seqlens_k = b.one("Cast", b.one("Sub", lengths, one), to=TensorProto.INT32)  # [batch]
    width = b.one("Gather", b.one("Shape", contract.ATTENTION_MASK), b.weight("/const/axis1", np.array(1, np.int64)), axis=0)
    total = b.one("Cast", width, to=TensorProto.INT32)  # scalar

    wte, wpe = w("transformer.wte.weight"), w("transformer.wpe.weight")
    hidden = b.one("Add", b.one("Gather", wte, contract.INPUT_IDS), b.one("Gather", wpe, contract.POSITION_IDS))  # [batch, seq, n_embd]
    chunk = Chunk(b, wte, wpe, n_embd, hidden) if packed_chunk else None
    if chunk is not None:
        hidden = chunk.hidden  # [batch * seq + chunk, n_embd]: every MatMul runs the rows' tokens and the chunk's as one
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        x = hidden if post_ln else b.one("LayerNormalization", hidden, w(p + "ln_1.weight"), w(p + "ln_1.bias"), axis=-1, epsilon=eps)
        qkv = b.one("Add", b.one("MatMul", x, w(p + "attn.c_attn.weight")), w(p + "attn.c_attn.bias"))  # [batch, seq, 3 n_embd]
        past_key, past_value = contract.past_names(i)
        present_key, present_value = contract.present_names(i)
        scale = 1.0 / math.sqrt(head_dim) if config.get("scale_attn_weights", True) else 1.0
        if config.get("scale_attn_by_inverse_layer_idx"):
            scale /= i + 1
        # c_attn's output is [q | k | v], each head after head: GroupQueryAttention's packed QKV
        # layout, so it goes in whole (key and value empty) and no Split runs.
        attn_inputs, quant = [qkv, "", "", past_key, past_value, seqlens_k, total], {}
        if kv_scales is not None:  # inputs 7-11 (rotary, position ids, bias, sinks) unused; 12, 13: k_scale, v_scale
            k_scale, v_scale = (b.weight(f"/h.{i}/{kind}_scale", np.ravel(scales).astype(np.float32)) for kind, scales in zip("kv", kv_scales[i]))
            attn_inputs += [""] * 5 + [k_scale, v_scale]
            quant = dict(k_quant_type="PER_CHANNEL", v_quant_type="PER_CHANNEL", kv_cache_bit_width=8)
        gqa = dict(domain=MS_DOMAIN, num_heads=n_head, kv_num_heads=n_head, scale=scale, **quant)
        if chunk is None:
            attn = b.op("GroupQueryAttention", attn_inputs, [f"/h.{i}/attn", present_key, present_value], **gqa)[0]  # [batch, seq, n_embd]
        else:
            attn = chunk.attention(i, attn_inputs, gqa)  # [batch * seq + chunk, n_embd]
        out = b.one("Add", b.one("MatMul", attn, w(p + "attn.c_proj.weight")), w(p + "attn.c_proj.bias"))
        hidden = b.one("Add", hidden, out)
        if post_ln:
            hidden = x = b.one("LayerNormalization", hidden, w(p + "ln_1.weight"), w(p + "ln_1.bias"), axis=-1, epsilon=eps)
        else:
            x = b.one("LayerNormalization", hidden, w(p + "ln_2.weight"), w(p + "ln_2.bias"), axis=-1, epsilon=eps)
        up = b.one("Add", b.one("MatMul", x, w(p + "mlp.c_fc.weight")), w(p + "mlp.c_fc.bias"))
        down = b.one("Add", b.one("MatMul", _activation(b, up, activation), w(p + "mlp.c_proj.weight")), w(p + "mlp.c_proj.bias"))
        hidden = b.one("Add", hidden, down)
        if post_ln:
            hidden = b.one("LayerNormalization", hidden, w(p + "ln_2.weight"), w(p + "ln_2.bias"), axis=-1, epsilon=eps)
    # Only the last logits_to_keep positions reach the output layer: a prompt's prefill needs one
    # row of logits, not seq x vocab of them (a third of a 512-token prefill's work on gpt2).
    start = b.one("Neg", contract.LOGITS_TO_KEEP)
    end = b.weight("/const/end", np.array([np.iinfo(np.int64).max], np.int64))
    if chunk is not None:
        hidden = chunk.kept(hidden, start, end)  # [batch * logits_to_keep + chunk_logits_to_keep, n_embd]
    else:
        hidden = b.one("Slice", hidden, start, end, one)  # [batch, logits_to_keep, n_embd]
    final = hidden if post_ln else b.one("LayerNormalization", hidden, w("transformer.ln_f.weight"), w("transformer.ln_f.bias"), axis=-1, epsilon=eps)
    untied = weights.pop("lm_head.weight", None)  # [vocab, n_embd]: a checkpoint with tie_word_embeddings false
    if untied is not None:
        lm_head = b.weight("lm_head.weight_transposed", untied.T)  # [n_embd, vocab]
    elif lm_head_transposed:
        lm_head = b.weight("lm_head.weight_transposed", wte_array.T)  # [n_embd, vocab]
    else:
        # onnxruntime folds it once at load into a transposed copy, and keeps wte for the lookup
        # (1.36x the file's bytes on gpt2). Storing the tied weight once, transposed and listed as an
        # overridable graph input, was measured: 1.05x, but an unpacked output layer made batch 8
        # and beam search about 30% slower (MLAS packs it again at every call of more than one row).
        lm_head = b.one("Transpose", wte, perm=[1, 0])
    if chunk is None:
        b.op("MatMul", [final, lm_head], [contract.LOGITS])
    else:
        chunk.logits(b.one("MatMul", final, lm_head), config["vocab_size"])

    kv = ["batch_size", n_head, "max_sequence_length", head_dim]
    inputs = [
        helper.make_tensor_value_info(contract.INPUT_IDS, TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(contract.ATTENTION_MASK, TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info(contract.POSITION_IDS, TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(contract.LOGITS_TO_KEEP, TensorProto.INT64, [1]),
    ]
    outputs = [helper.make_tensor_value_info(contract.LOGITS, TensorProto.FLOAT, ["batch_size", "logits_to_keep", config["vocab_size"]])]
    kv_type = TensorProto.FLOAT if kv_scales is None else TensorProto.INT8
    for i in range(n_layer):
        inputs += [helper.make_tensor_value_info(name, kv_type, kv) for name in contract.past_names(i)]
        outputs += [helper.make_tensor_value_info(name, kv_type, kv) for name in contract.present_names(i)]
    if chunk is not None:
        chunk_kv = [1, n_head, "chunk_max_sequence_length", head_dim]
        inputs += [helper.make_tensor_value_info(name, TensorProto.INT64, shape) for name, shape in (
            (contract.CHUNK_IDS, [1, "chunk_length"]), (contract.CHUNK_ATTENTION_MASK, [1, "chunk_total_sequence_length"]),
            (contract.CHUNK_POSITION_IDS, [1, "chunk_length"]), (contract.CHUNK_LOGITS_TO_KEEP, [1]))]
        outputs.append(helper.make_tensor_value_info(contract.CHUNK_LOGITS, TensorProto.FLOAT, [1, "chunk_logits_to_keep", config["vocab_size"]]))
        for i in range(n_layer):
            inputs += [helper.make_tensor_value_info(name, kv_type, chunk_kv) for name in contract.chunk_past_names(i)]
            outputs += [helper.make_tensor_value_info(name, kv_type, chunk_kv) for name in contract.chunk_present_names(i)]
    model.graph.node.extend(b.nodes)
    model.graph.input.extend(inputs)
    model.graph.output.extend(outputs)
    return model, b.matrices


def attach_matrices(model, matrices: dict[str, np.ndarray]) -> None:
    """Give `model`'s weight matrices their bytes, consuming `matrices` (so each is held
    once); initializers a graph pass dropped as unused are skipped."""
    for tensor in model.graph.initializer:
        if tensor.name in matrices:
            tensor.raw_data = np.ascontiguousarray(matrices.pop(tensor.name)).tobytes()
        elif len(tensor.dims) >= 2 and not (tensor.raw_data or tensor.float_data):
            # A new matrix made from one without bytes: a graph pass needed them.
            raise RuntimeError(f"initializer {tensor.name!r} was made from a weight matrix without its bytes")
