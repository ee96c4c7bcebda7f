"""Reading and checking an export folder's manifest.json.

The manifest says what the model is (GPT-2's own config names), which tensors
the graph takes and gives, and the sha256 of every file, so a folder that was
truncated, tampered with or half-written is refused before anything runs.

Nothing outside the folder is ever read: every file the runtime opens must
resolve inside it (no "..", no absolute names, no symlinks that leave it), and
the graph may take external data only from files the manifest lists (see
external_data.py). A manifest of the wrong shape (junk JSON, wrong types) is a
one-line ModelLoadError, never another exception.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import contract, external_data
from .errors import ModelLoadError, short

DTYPES = ("float32", "float16")  # element types an export's logits and KV cache may have
WEIGHTS = ("float32", "float16", "int8", "int4")  # how an export's weights may be stored
KV_DTYPES = DTYPES + ("int8",)  # element types the KV cache may have (int8: the shared layout only)


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
    kv_cache: str = contract.CONCAT_KV  # the graph's KV layout: "shared" (in-place buffers) or "concat" (Optimum's)
    weights: str = "float32"  # how the weights are stored: "float32", "float16", "int8" (dynamic quantization) or "int4" (MatMulNBits)
    kv_cache_dtype: str | None = None  # the KV cache's element type where it is not dtype: "int8" (fixed scales in the graph)
    architecture: str = contract.GPT2_LM  # transformers' class of the exported model (contract.TASKS)
    labels: tuple[str, ...] | None = None  # a classifier's label names by id (config.json's id2label)
    pad_token_id: int | None = None  # a classifier's padding token: its score is read at the last other token
    packed_chunk: bool = False  # the shared graph also runs one prompt chunk beside its rows, in the same pass (contract.CHUNK_*)

    @property
    def model_type(self) -> str:
        """config.json's model_type: "gpt2", or "openai-gpt" for GPT-1."""
        return "openai-gpt" if self.architecture == contract.OPENAI_GPT_LM else "gpt2"

    @property
    def task(self) -> str:
        """What the model does: contract.TEXT_GENERATION or contract.TEXT_CLASSIFICATION."""
        return contract.TASKS[self.architecture]

    @property
    def kv_dtype(self) -> str:
        """The KV cache's element type."""
        return self.kv_cache_dtype or self.dtype

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


def inside(folder: Path, name: str) -> Path:
    """folder / name, refused unless it stays inside the folder once symlinks are followed."""
    path = folder / name
    if not name or "\0" in name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} names a file outside the folder ({short(name)}): refusing to load it")
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(os.path.realpath(folder)):
        raise ModelLoadError(f"{path} is a link to {target}, outside the model folder: refusing to read it; copy the file into the folder")
    return path


def read_json(path: Path) -> dict:
    """A JSON object from a file of the export folder; anything else is a one-line ModelLoadError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path.parent} has no {path.name}: it is not a gpt2onnx export folder (make one with 'gpt2onnx export')") from None
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror or e}") from None
    except RecursionError:
        raise ModelLoadError(f"{path} is not valid JSON (nested too deeply): re-export the model") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer with too many digits
        raise ModelLoadError(f"{path} is not valid JSON ({str(e).splitlines()[0]}): re-export the model") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object: re-export the model")
    return data


def read_manifest(folder: Path) -> dict:
    """Load manifest.json and check its format and version."""
    manifest = read_json(inside(folder, contract.MANIFEST_FILE))
    if manifest.get("format") != contract.MANIFEST_FORMAT:
        raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} is not a gpt2onnx manifest: re-export the model with 'gpt2onnx export'")
    version = manifest.get("format_version")
    if type(version) is not int or version != contract.MANIFEST_VERSION:  # not true, not 1.0
        raise ModelLoadError(
            f"{folder} has manifest format version {short(version)}, this gpt2onnx reads version {contract.MANIFEST_VERSION}: "
            "re-export the model or upgrade gpt2onnx"
        )
    return manifest


def model_info(manifest: dict, where: Path) -> ModelInfo:
    """The manifest's `model` block as a ModelInfo, with a clear error if anything is off."""
    path = where / contract.MANIFEST_FILE
    block = manifest.get("model")
    if not isinstance(block, dict):
        raise ModelLoadError(f"{path} has no 'model' block: re-export the model")

    def whole(key: str, minimum: int, optional: bool = False) -> int | None:
        value = block.get(key)
        if value is None and optional:
            return None
        # JSON gives int for whole numbers: 2.0, "2" or true is a broken manifest, not a 2.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ModelLoadError(f"{path} has a broken 'model' block ({key} must be a whole number >= {minimum}, got {short(value)}): re-export the model")
        return value

    dtype = manifest.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ModelLoadError(f"{path} has dtype {short(dtype)}; gpt2onnx runs {', '.join(DTYPES)}: re-export the model")
    kv_cache = manifest.get("kv_cache", contract.CONCAT_KV)
    if kv_cache not in contract.KV_LAYOUTS:
        raise ModelLoadError(f"{path} has kv_cache {short(kv_cache)}; gpt2onnx runs {', '.join(contract.KV_LAYOUTS)}: re-export the model")
    weights = manifest.get("weights", dtype)
    if weights not in WEIGHTS:
        raise ModelLoadError(f"{path} has weights {short(weights)}; gpt2onnx runs {', '.join(WEIGHTS)}: re-export the model")
    kv_dtype = manifest.get("kv_cache_dtype", dtype)
    if kv_dtype not in KV_DTYPES or (kv_dtype == "int8" and kv_cache != contract.SHARED_KV):
        raise ModelLoadError(f"{path} has kv_cache_dtype {short(kv_dtype)} with kv_cache {short(kv_cache)}, which gpt2onnx does not run: re-export the model")
    packed_chunk = manifest.get("packed_chunk", False)  # exports before it: the rows only
    if not isinstance(packed_chunk, bool) or (packed_chunk and kv_cache != contract.SHARED_KV):
        raise ModelLoadError(f"{path} has packed_chunk {short(packed_chunk)} with kv_cache {short(kv_cache)}, which gpt2onnx does not run: re-export the model")
    architecture = block.get("architecture", contract.GPT2_LM)  # manifests before GPT-1 and classifiers: GPT-2 LMs
    if not isinstance(architecture, str) or architecture not in contract.TASKS:  # a dict: a list would not even hash
        raise ModelLoadError(f"{path} has architecture {short(architecture)}; gpt2onnx runs {', '.join(contract.TASKS)}: re-export the model")
    labels = block.get("labels")
    if contract.TASKS[architecture] == contract.TEXT_CLASSIFICATION:
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise ModelLoadError(f"{path} has no label names for its classifier ('labels' must be a list of strings): re-export the model")
        labels = tuple(labels)
    else:
        labels = None
    info = ModelInfo(
        n_layer=whole("n_layer", 1),
        n_head=whole("n_head", 1),
        n_embd=whole("n_embd", 1),
        n_positions=whole("n_positions", 1),
        vocab_size=whole("vocab_size", 1),
        eos_token_id=whole("eos_token_id", 0, optional=True),
        bos_token_id=whole("bos_token_id", 0, optional=True),
        dtype=dtype,
        kv_cache=kv_cache,
        weights=weights,
        kv_cache_dtype=None if kv_dtype == dtype else kv_dtype,
        architecture=architecture,
        labels=labels,
        pad_token_id=whole("pad_token_id", 0, optional=True),
        packed_chunk=packed_chunk,
    )
    if info.n_embd % info.n_head:
        raise ModelLoadError(f"{path} describes an impossible model: re-export the model")
    return info


def verify_files(folder: Path, manifest: dict, check_hashes: bool = True) -> None:
    """Check every file the manifest lists: inside the folder, present, the right size, and
    (optionally) the right sha256; then that the graph's external data is among them."""
    files = manifest.get("files")
    if not isinstance(files, dict) or contract.MODEL_FILE not in files:
        raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} lists no files: re-export the model")
    for name in files:  # every path first, so nothing is read before all are known to be inside
        inside(folder, name)
    for name, entry in files.items():
        path = folder / name
        if not isinstance(entry, dict):
            raise ModelLoadError(f"{folder / contract.MANIFEST_FILE} has a broken entry for {short(name)}: re-export the model")
        if not path.is_file():
            raise ModelLoadError(f"{folder} is missing {name}: copy the whole export folder, or re-export the model")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ModelLoadError(f"{path} has {size} bytes, the manifest says {short(entry.get('bytes'))}: the file is truncated or changed; re-export the model")
        if check_hashes and sha256_file(path) != entry.get("sha256"):
            raise ModelLoadError(f"{path} does not match its sha256 in the manifest: the file was changed or corrupted; re-export the model")
    external_data.check(folder, folder / contract.MODEL_FILE, set(files))
