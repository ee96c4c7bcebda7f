"""Weight bytes of an ONNX decoder graph (model.onnx, external data included):
stored, and read per generated token, for the memory-bandwidth bound of the
contenders that run an ONNX graph (gpt2onnx and Optimum)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np


def weight_bytes(folder: Path) -> dict:
    """Bytes of the graph's weights (model.onnx, external data included), stored and read per token.

    Read per token: every initializer (and Constant) in full, except those only
    ever read through Gather's data input (embedding lookups: wpe, an untied
    wte), which read one row. The tied wte that the lm_head MatMul reads counts
    in full. The KV cache is not counted (at context 64 it is ~1% of fp32 GPT-2).
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    graph = model.graph
    consumers = defaultdict(list)  # tensor name -> [(op_type, input index)]
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers[name].append((node.op_type, i))
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(node.output[0], a.t) for node in graph.node if node.op_type == "Constant" for a in node.attribute if a.name == "value"]
    stored = read = 0
    for name, tensor in tensors:
        dims = list(tensor.dims)
        size = int(np.prod(dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        stored += size
        uses = consumers.get(name, [])
        gather_only = bool(uses) and all(op == "Gather" and i == 0 for op, i in uses) and len(dims) >= 1 and dims[0] > 0
        read += size // dims[0] if gather_only else size
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name.startswith("model.onnx")}
    return {"stored_bytes": stored, "read_bytes_per_token": read, "model_files_bytes": files}
