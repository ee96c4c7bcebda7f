"""Writing manifest.json: model facts, dtype, I/O contract, file hashes and the
exporter's package versions. It is written last, so a folder without it is
never a finished export.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

from gpt2onnx.runtime import contract
from gpt2onnx.runtime.manifest import ModelInfo, sha256_file

from .validate import ValidationReport

EXPORTER_PACKAGES = ("gpt2onnx", "optimum-onnx", "optimum", "transformers", "torch", "accelerate", "onnx", "onnxruntime-gpu", "onnxruntime", "tokenizers", "numpy")


def label_names(config: dict) -> tuple[str, ...]:
    """A classifier's label names by id, from config.json's id2label (keys are strings there)."""
    id2label = config.get("id2label") or {}
    count = int(config.get("num_labels") or len(id2label) or 2)
    return tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(count))


def model_info_from_config(
    config: dict,
    dtype: str = "float32",
    kv_cache: str = contract.CONCAT_KV,
    weights: str = "float32",
    kv_cache_dtype: str | None = None,
    architecture: str = contract.GPT2_LM,
) -> ModelInfo:
    """ModelInfo from a GPT-2 (or GPT-1) config.json, for the model class `architecture`."""
    classifier = contract.TASKS[architecture] == contract.TEXT_CLASSIFICATION
    return ModelInfo(
        n_layer=int(config["n_layer"]),
        n_head=int(config["n_head"]),
        n_embd=int(config["n_embd"]),
        n_positions=int(config["n_positions"]),
        vocab_size=int(config["vocab_size"]),
        eos_token_id=config.get("eos_token_id"),
        bos_token_id=config.get("bos_token_id"),
        dtype=dtype,
        kv_cache=kv_cache,
        weights=weights,
        kv_cache_dtype=kv_cache_dtype,
        packed_chunk=kv_cache == contract.SHARED_KV,  # every GroupQueryAttention graph gpt2onnx builds has its chunk part
        architecture=architecture,
        labels=label_names(config) if classifier else None,
        pad_token_id=config.get("pad_token_id") if classifier else None,
    )


def package_versions(names: tuple[str, ...] = EXPORTER_PACKAGES) -> dict[str, str]:
    """Installed versions of these packages, by default the exporter stack (absent packages left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_manifest(folder: Path, info: ModelInfo, source: str, validation: ValidationReport) -> dict:
    """Hash every file in `folder` and write manifest.json; return the manifest."""
    files = {
        path.name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != contract.MANIFEST_FILE
    }
    if info.task == contract.TEXT_CLASSIFICATION:  # no KV cache: kv_cache stays at its default, unused
        io = contract.classifier_signature(info.dtype)
    else:
        io = contract.io_signature(info.n_layer, info.dtype, info.kv_cache, info.kv_dtype, info.packed_chunk)
    manifest = {
        "format": contract.MANIFEST_FORMAT,
        "format_version": contract.MANIFEST_VERSION,
        "source": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {
            "model_type": info.model_type,
            "architecture": info.architecture,
            "n_layer": info.n_layer,
            "n_head": info.n_head,
            "n_embd": info.n_embd,
            "n_positions": info.n_positions,
            "vocab_size": info.vocab_size,
            "eos_token_id": info.eos_token_id,
            "bos_token_id": info.bos_token_id,
            **({"labels": list(info.labels), "pad_token_id": info.pad_token_id} if info.labels else {}),
        },
        "dtype": info.dtype,
        "weights": info.weights,
        "kv_cache": info.kv_cache,
        "kv_cache_dtype": info.kv_dtype,
        **({"packed_chunk": True} if info.packed_chunk else {}),
        "io": io,
        "files": files,
        "validation": {
            "max_abs_diff": validation.max_abs_diff,
            "prefill_max_abs_diff": validation.prefill_max_abs_diff,
            "cached_max_abs_diff": validation.cached_max_abs_diff,
            "atol": validation.atol,
        },
        "exporter": package_versions(),
    }
    (folder / contract.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
