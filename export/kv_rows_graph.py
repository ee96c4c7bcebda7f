"""The graphs that move KV-cache rows on the device (runtime/kv_rows.py runs them).

One graph per cache element type, shipped inside the runtime package as
runtime/graphs/kv_rows_<dtype>.onnx: the runtime has no onnx package to build
them with, and they depend on nothing of the model (every shape is dynamic).

    kv      [rows, row_size]  the cache as one block: (layer's key or value, slot) rows
    src     [moves]           rows to read
    dst     [moves, 1]        where each goes
    kv_out  [rows, row_size]  = kv with kv_out[dst[i]] = kv[src[i]]

Gather reads every source row before ScatterND writes any, so overlapping moves
(a swap, a beam that replaces a beam it also feeds) are safe. The caller binds
kv_out to kv's own memory: onnxruntime's ScatterND (CPU and CUDA) skips its
input-to-output copy when the two are the same buffer, so only the moved rows
are written.

    python -m gpt2onnx.export.kv_rows_graph   # rewrites the shipped graphs
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from gpt2onnx.runtime.kv_rows import GRAPHS

DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int8": TensorProto.INT8}
OPSET = 13  # Gather-13 and ScatterND-13: every onnxruntime the runtime accepts has both on CPU and CUDA
IR_VERSION = 7  # opset 13's


def build(dtype: str) -> onnx.ModelProto:
    """The row-moving graph for a cache of `dtype` ("float32", "float16" or "int8")."""
    elem = DTYPES[dtype]
    nodes = [
        helper.make_node("Gather", ["kv", "src"], ["moved"], axis=0),  # [moves, row_size]
        helper.make_node("ScatterND", ["kv", "dst", "moved"], ["kv_out"]),  # [rows, row_size]
    ]
    graph = helper.make_graph(
        nodes,
        f"kv_rows_{dtype}",
        inputs=[
            helper.make_tensor_value_info("kv", elem, ["rows", "row_size"]),
            helper.make_tensor_value_info("src", TensorProto.INT64, ["moves"]),
            helper.make_tensor_value_info("dst", TensorProto.INT64, ["moves", 1]),
        ],
        outputs=[helper.make_tensor_value_info("kv_out", elem, ["rows", "row_size"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="gpt2onnx")
    onnx.checker.check_model(model)
    return model


def write(folder: Path = GRAPHS) -> list[Path]:
    """Write every dtype's graph into `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dtype in DTYPES:
        path = folder / f"kv_rows_{dtype}.onnx"
        path.write_bytes(build(dtype).SerializeToString())
        paths.append(path)
    return paths


if __name__ == "__main__":
    for path in write():
        print(path)
