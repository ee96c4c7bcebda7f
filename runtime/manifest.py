"""Reading and checking an export folder's manifest.json.

The manifest says what the model is (GPT-2's own config names), which tensors
the graph takes and gives, and the sha256 of every file, so a folder that was
truncated, tampered with or half-written is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import contract
from .errors import ModelLoadError


@dataclass(frozen=True)
class ModelInfo:
    """The model facts a runtime needs, with GPT-2's config names."""

    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # hidden size
    n_positions: int  # context length: positions 0 .. n_positions-1 exist
    vocab_size: int  # rows of wte and columns of logits
    eos_token_id: int | None  # <|endoftext|> for GPT-2
    bos_token_id: int | None  # the same token for GPT-2
    dtype: str  # element type of logits and the KV cache, e.g. "float32"

    @property
    def head_dim(self) -> int:
        """Size of one head's keys and values."""
        return self.n_embd // self.n_head


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so a multi-GB model never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path.parent} has no {path.name}: it is not a gpt2onnx export folder (make one with 'gpt2onnx export')") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e}): re-export the model") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object: re-export the model")
    return data


def read_manifest(folder: Path) -> dict:
    """Load manifest.json and check its format and version."""
    manifest = _read_json(folder / contract.MANIFEST_FILE, "manifest")
    if manifest.get("format") != contract.MANIFEST_FORMAT:
        raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} is not a gpt2onnx manifest: re-export the model with 'gpt2onnx export'")
    version = manifest.get("format_version")
    if version != contract.MANIFEST_VERSION:
        raise ModelLoadError(
            f"{folder} has manifest format version {version!r}, this gpt2onnx reads version {contract.MANIFEST_VERSION}: "
            "re-export the model or upgrade gpt2onnx"
        )
    return manifest


def model_info(manifest: dict, where: Path) -> ModelInfo:
    """The manifest's `model` block as a ModelInfo, with a clear error if anything is off."""
    block = manifest.get("model")
    try:
        info = ModelInfo(
            n_layer=int(block["n_layer"]),
            n_head=int(block["n_head"]),
            n_embd=int(block["n_embd"]),
            n_positions=int(block["n_positions"]),
            vocab_size=int(block["vocab_size"]),
            eos_token_id=None if block.get("eos_token_id") is None else int(block["eos_token_id"]),
            bos_token_id=None if block.get("bos_token_id") is None else int(block["bos_token_id"]),
            dtype=str(manifest.get("dtype", "float32")),
        )
    except (TypeError, KeyError, ValueError) as e:
        raise ModelLoadError(f"{where / contract.MANIFEST_FILE} has a broken 'model' block ({e!r}): re-export the model") from None
    if min(info.n_layer, info.n_head, info.n_embd, info.n_positions, info.vocab_size) <= 0 or info.n_embd % info.n_head:
        raise ModelLoadError(f"{where / contract.MANIFEST_FILE} describes an impossible model: re-export the model")
    return info


def verify_files(folder: Path, manifest: dict, check_hashes: bool = True) -> None:
    """Check every file the manifest lists: present, the right size, and (optionally) the right sha256."""
    files = manifest.get("files")
    if not isinstance(files, dict) or contract.MODEL_FILE not in files:
        raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} lists no files: re-export the model")
    for name, entry in files.items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} names a file outside the folder ({name!r}): refusing to load it")
        if not path.is_file():
            raise ModelLoadError(f"{folder} is missing {name}: copy the whole export folder, or re-export the model")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ModelLoadError(f"{path} has {size} bytes, the manifest says {entry.get('bytes')}: the file is truncated or changed; re-export the model")
        if check_hashes and sha256_file(path) != entry.get("sha256"):
            raise ModelLoadError(f"{path} does not match its sha256 in the manifest: the file was changed or corrupted; re-export the model")
