"""Finding the checkpoint to export: a local folder, or a hub id (downloaded once,
failing fast when offline), and refusing anything that is not GPT-2 or GPT-1.

What is exported follows config.json's `architectures`, as transformers' Auto
classes do: a GPT2ForSequenceClassification checkpoint becomes a classifier; every
other GPT-2 (GPT2LMHeadModel, GPT2DoubleHeadsModel's LM head, a bare GPT2Model whose
head is its tied embedding) and GPT-1 checkpoint becomes a generator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gpt2onnx.runtime import contract
from gpt2onnx.runtime.errors import UsageError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
HUB_TIMEOUT_S = 10  # per request; a hub that doesn't answer fails the export instead of hanging


# config.json's model_type -> (the class exported by default, classes exported as themselves,
# classes whose extra heads are dropped: their language-model head is what is exported).
FAMILY = {
    "gpt2": (contract.GPT2_LM, (contract.GPT2_CLASSIFIER,), ("GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2Model")),
    "openai-gpt": (contract.OPENAI_GPT_LM, (), ("OpenAIGPTLMHeadModel", "OpenAIGPTDoubleHeadsModel", "OpenAIGPTModel")),
}

# "gpt2" or "org/name": anything else that doesn't exist is a missing folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = ["config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", *TOKENIZER_FILES]
    try:
        try:  # the local cache first: works offline for a model fetched before
            return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        except LocalEntryNotFoundError:
            pass
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=HUB_TIMEOUT_S))
    except HFValidationError:
        raise UsageError(f"no such folder, and {repo_id!r} is not a valid hub id: pass a checkpoint folder") from None
    except GatedRepoError:
        raise UsageError(f"{repo_id!r} is gated on the Hugging Face hub: log in with 'hf auth login' first") from None
    except RepositoryNotFoundError:
        raise UsageError(f"no such folder, and no model {repo_id!r} on the Hugging Face hub: check the name") from None
    except (LocalEntryNotFoundError, OSError) as e:
        raise UsageError(
            f"no such folder, and {repo_id!r} can't be downloaded from the Hugging Face hub ({type(e).__name__}; offline?): "
            "pass a local checkpoint folder, or run once online"
        ) from None


def resolve(model: str) -> Path:
    """The local folder of `model`: the folder itself, or the hub snapshot of a hub id."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{model} is a file: pass the checkpoint folder that holds config.json and the weights")
        return path
    if not HUB_ID.fullmatch(model):
        raise UsageError(f"no such folder: {model}")
    return _download(model)


def architecture(config: dict, folder: Path) -> str:
    """The class gpt2onnx exports this checkpoint as (contract.TASKS), or a one-line refusal."""
    model_type = config.get("model_type")
    if model_type not in FAMILY:
        raise UsageError(
            f"{folder} holds a {model_type or 'unknown'!s} checkpoint: gpt2onnx exports GPT-2 and GPT-1 models only "
            "(model_type 'gpt2' or 'openai-gpt')"
        )
    default, own, language_models = FAMILY[model_type]
    named = config.get("architectures") or [default]
    name = named[0] if isinstance(named, list) and named and isinstance(named[0], str) else default
    if name in own:
        return name
    if name in language_models:
        return default
    exported = ", ".join((*language_models, *own))
    raise UsageError(f"{folder} holds a {name} checkpoint: gpt2onnx exports {exported} checkpoints")


def check_checkpoint(folder: Path) -> tuple[dict, str]:
    """Refuse a folder that is not a GPT-2 or GPT-1 checkpoint with a tokenizer; return its config and
    the class it is exported as."""
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{folder} has no config.json: it is not a Hugging Face checkpoint folder") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{config_path} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{config_path} is not a JSON object: it is not a Hugging Face checkpoint's config")
    kind = architecture(config, folder)
    if config.get("add_cross_attention"):
        raise UsageError(
            f"{folder} has add_cross_attention: it is the decoder of an encoder-decoder model and needs its encoder's "
            "states; export the encoder-decoder pair with Optimum instead"
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"{folder} has no weights ({' or '.join(WEIGHT_FILES[::2])}): save the model with save_pretrained")
    has_tokenizer = (folder / "tokenizer.json").is_file() or all((folder / n).is_file() for n in ("vocab.json", "merges.txt"))
    if not has_tokenizer:
        raise UsageError(f"{folder} has no tokenizer (tokenizer.json, or vocab.json and merges.txt): save it with the model")
    return config, kind
