"""A PyTorch checkpoint rebuilt from a float32 GroupQueryAttention export.

The export's initializers keep PyTorch's parameter names (fast_graph.read_weights
reads them back), so the GPT2LMHeadModel they came from can be made again and
exported anew, say at int8 or int4. That is how the shipped default model,
whose training checkpoint is not kept, gets its quantized exports for the
quality table (benchmarks/quality.py) and the int4 tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gpt2onnx.runtime import contract
from gpt2onnx.runtime.errors import UsageError

from . import fast_graph

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def rebuild_checkpoint(export_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the GPT2LMHeadModel a float32 export holds (weights, config, tokenizer) to out_dir."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    manifest = json.loads((export_dir / contract.MANIFEST_FILE).read_text())
    if manifest.get("weights", manifest.get("dtype")) != "float32":
        raise UsageError(f"{export_dir} stores {manifest.get('weights')} weights: a checkpoint is rebuilt from a float32 export only")
    config = GPT2Config.from_dict(json.loads((export_dir / "config.json").read_text()))
    model = GPT2LMHeadModel(config).eval()
    weights = fast_graph.read_weights(export_dir / contract.MODEL_FILE)
    state = model.state_dict()
    found = {name: torch.from_numpy(weights[name].copy()) for name in state if name in weights}
    if "lm_head.weight" not in found:
        found["lm_head.weight"] = found["transformer.wte.weight"]  # tied: the export stores it once
    missing = [name for name in state if name not in found and not name.endswith(".attn.bias") and not name.endswith(".attn.masked_bias")]
    if missing:
        raise UsageError(f"{export_dir} lacks {missing[0]} (and {len(missing) - 1} more): re-export it from its checkpoint")
    model.load_state_dict(found, strict=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        if (export_dir / name).is_file():
            shutil.copy2(export_dir / name, out_dir / name)
    return out_dir
