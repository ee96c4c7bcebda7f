"""From Optimum's validated graph to the graph gpt2onnx ships: rebuilt around
GroupQueryAttention (fast_graph.py), fused by onnxruntime's transformer
optimizer, then optionally int8 (onnxruntime's dynamic quantization), int4
(onnxruntime's block-wise MatMulNBits quantizer) or float16 (onnxruntime's
float16 converter, for CUDA).

Order matters, as onnxruntime's own notes say: build -> fuse -> quantize. The
fused graph holds contrib ops the quantizer doesn't know, so it is told their
tensors are float32.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpt2onnx.runtime import contract

from . import fast_graph, gpt1
from .onnx_export import save_onnx


@dataclass(frozen=True)
class GraphPlan:
    """What `gpt2onnx export` writes as model.onnx."""

    graph: str = "gqa"  # "gqa": GroupQueryAttention with an in-place KV cache; "optimum": Optimum's graph as exported
    weights: str = "float32"  # "float32", "int8" or "int4" (CPU), or "float16" (CUDA)
    kv_cache_dtype: str = "auto"  # "auto" or "float32": the weights' float type (float16 for float16); "int8": kv_quant.py

    @property
    def kv_int8(self) -> bool:
        """Whether the KV cache is int8 (kv_quant.py's scales)."""
        return self.kv_cache_dtype == "int8"


def fuse(model, config: dict):
    """onnxruntime's transformer optimizer on the rebuilt graph: LayerNorm + residual Add ->
    SkipLayerNormalization, tanh GELU + bias -> FastGelu. (Attention is already fused.)

    It reads the graph, shapes and 1-D constants (it checks that biases are constants),
    so it runs on the graph before its weight matrices get their bytes (fast_graph.build)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("gpt2")
    options.enable_attention = False  # GroupQueryAttention is built in; the gpt2 attention fusion looks for Optimum's pattern
    # It warns that the producer is not "pytorch", and its shape inference that it can't order the
    # chunk part's symbolic lengths (chunk_graph.py), which nothing here needs (the optimizer imports that
    # module top-level, hence its logger's name).
    loggers = [logging.getLogger(name) for name in ("onnxruntime.transformers", "symbolic_shape_infer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            model, model_type="gpt2", num_heads=config["n_head"], hidden_size=config["n_embd"], opt_level=0, optimization_options=options
        )
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return optimized.model


def quantize_int8(fused: Path):
    """Dynamic int8 quantization of every MatMul with a constant weight (onnxruntime.quantization):
    weights int8 per output column, activations quantized on the fly; LayerNorms, attention and the
    embeddings stay float32. `fused` is the float32 model's file, in a scratch folder the
    int8 model is written to as well: onnxruntime reads it itself, so the caller holds no
    second copy meanwhile."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = fused.with_name("int8.onnx")
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to run shape-inference pre-processing: not for this graph
    try:
        quantize_dynamic(
            fused,
            dst,
            weight_type=QuantType.QInt8,
            per_channel=True,  # one scale per output column
            reduce_range=True,  # 7-bit weights: x86 u8s8 kernels without VNNI saturate on full-range int8 pairs
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # for the contrib ops' outputs
        )
    finally:
        root.setLevel(level)
    return onnx.load(str(dst))


NBITS_BLOCK = 32  # weights per scale along K: llama.cpp's q4_0 and q8_0 blocks
NBITS_ACCURACY = 4  # MatMulNBits' accuracy_level 4: activations quantized to int8 per block, int8 dot products on x86


def quantize_nbits(fused: Path, bits: int):
    """Weight-only block-wise quantization of every MatMul with a constant weight, the output
    layer included (onnxruntime's MatMulNBitsQuantizer): `bits`-bit symmetric weights, one
    float32 scale per NBITS_BLOCK weights along K. LayerNorms, attention and the embeddings
    stay float32. Like quantize_int8, it reads `fused` itself."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # it logs every node it quantizes
    try:
        quantizer = MatMulNBitsQuantizer(str(fused), bits=bits, block_size=NBITS_BLOCK, is_symmetric=True,
                                         accuracy_level=NBITS_ACCURACY, op_types_to_quantize=("MatMul",))
        quantizer.process()
    finally:
        root.setLevel(level)
    return quantizer.model.model


def to_float16(model):
    """Weights, activations, the KV cache and the logits in float16 (onnxruntime's converter),
    for CUDA, where GroupQueryAttention runs in float16 only."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True)


def optimize(folder: Path, config: dict, plan: GraphPlan, kv_scales: list | None = None, checkpoint: Path | None = None) -> str:
    """Replace Optimum's folder/model.onnx with the graph `plan` asks for; return the manifest's kv_cache.
    kv_scales: an int8 KV cache's scales (kv_quant.calibrate), None for a float one.
    checkpoint: a GPT-1 checkpoint, whose weights come from PyTorch (Optimum exports no GPT-1)."""
    import onnx

    if plan.graph == "optimum":
        return contract.CONCAT_KV
    path = folder / contract.MODEL_FILE
    quantized = plan.weights in ("int8", "int4")  # the quantizers take the output layer as a MatMul by a constant
    weights = gpt1.read_weights(checkpoint) if checkpoint is not None else fast_graph.read_weights(path)
    model, matrices = fast_graph.build(weights, config, lm_head_transposed=quantized, kv_scales=kv_scales)
    model = fuse(model, config)
    fast_graph.attach_matrices(model, matrices)
    if quantized:
        with tempfile.TemporaryDirectory(prefix=f"gpt2onnx-{plan.weights}-") as tmp:
            fused = Path(tmp) / contract.MODEL_FILE
            save_onnx(model, fused)
            del model
            gc.collect()
            model = quantize_int8(fused) if plan.weights == "int8" else quantize_nbits(fused, 4)
    elif plan.weights == "float16":
        model = to_float16(model)
    model.ir_version = fast_graph.IR_VERSION
    save_onnx(model, path)
    del model
    # The optimizer's objects and the model refer to each other in cycles, weights and all:
    # free them now, before validation loads the model twice more (gpt2-large: 3 GB kept).
    gc.collect()
    onnx.checker.check_model(str(path))
    return contract.SHARED_KV
