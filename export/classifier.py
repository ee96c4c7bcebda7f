"""Exporting a GPT2ForSequenceClassification checkpoint: Optimum's `text-classification`
graph as it comes (input_ids, attention_mask -> logits [batch, num_labels]; no KV
cache, nothing to optimize), validated against transformers on a right-padded batch
of the validation prompts, run through the runtime's classifier code.

The graph reads each text's scores at its last token that is not the pad token, with
the pad id traced into it, so the export needs one: config.json's pad_token_id, else
the tokenizer's pad token, else the eos token (what GPT-2 fine-tunes set:
`model.config.pad_token_id = tokenizer.eos_token_id`). The manifest records it and
the runtime pads with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpt2onnx.runtime import contract
from gpt2onnx.runtime.classifier import ClassifierSession, label_logits, pad_right
from gpt2onnx.runtime.errors import UsageError
from gpt2onnx.runtime.manifest import ModelInfo

from .manifest import model_info_from_config
from .onnx_export import export_onnx, needs_eager_attention
from .progress import Progress
from .validate import PROMPTS, ValidationReport

# float32 only: max abs difference of the label scores accepted, as for generators (random-init classifiers
# measure ~2e-6; the 124M shape with logits of +-11, 9.8e-4). The parity tests hold them to 1e-4.
DEFAULT_CLASSIFIER_ATOL = 1e-3


def pad_token(folder: Path, config: dict) -> tuple[int, str]:
    """The pad id the export traces into the graph, and where it came from (said in the progress line)."""
    if config.get("pad_token_id") is not None:
        pad, source = int(config["pad_token_id"]), "config.json's pad_token_id"
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        eos = config.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) and eos else eos
        if tokenizer.pad_token_id is not None:
            pad, source = int(tokenizer.pad_token_id), "the tokenizer's pad token"
        elif eos is not None or tokenizer.eos_token_id is not None:
            pad, source = int(eos if eos is not None else tokenizer.eos_token_id), "the eos token, as GPT-2 fine-tunes pad"
        else:
            raise UsageError(
                f"{folder} has no pad_token_id, pad token or eos token: set pad_token_id in config.json "
                "(a classifier reads each text at its last token that is not the pad token)"
            )
    if not 0 <= pad < int(config["vocab_size"]):
        raise UsageError(f"{folder}'s pad token id {pad} ({source}) is outside the vocabulary [0, {config['vocab_size']}): set pad_token_id in config.json")
    return pad, source


def torch_label_logits(folder: Path, ids_list: list[list[int]], pad: int) -> np.ndarray:
    """transformers' scores float32 [len(ids_list), num_labels] for the token lists right-padded with `pad`,
    with its eager attention: the reference, which honours every config option."""
    import torch
    from transformers import GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    model.config.pad_token_id = pad  # the rule the graph was traced with: read at the last token that is not `pad`
    input_ids, attention_mask = pad_right(ids_list, pad)  # [batch, width] each
    with torch.no_grad():
        return model(torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask)).logits.numpy()


def validate_classifier(folder: Path, export_dir: Path, info: ModelInfo, atol: float | None = None) -> ValidationReport:
    """Compare the export in `export_dir` with transformers on PROMPTS as one right-padded batch."""
    from gpt2onnx.runtime.tokenizer import Tokenizer

    tokenizer = Tokenizer(export_dir / contract.TOKENIZER_FILE)
    ids_list = [ids[: info.n_positions] for ids in map(tokenizer.encode, PROMPTS)]  # mixed lengths: rows get padding
    expected = torch_label_logits(folder, ids_list, info.pad_token_id)  # [texts, num_labels]
    got = label_logits(ClassifierSession(export_dir / contract.MODEL_FILE, info, provider="cpu"), ids_list)  # [texts, num_labels]
    diff = float(np.abs(got - expected).max())
    return ValidationReport(
        max_abs_diff=diff,
        prefill_max_abs_diff=diff,  # every text runs whole
        cached_max_abs_diff=0.0,  # no KV cache
        positions_checked=len(ids_list),  # one row of scores per text
        atol=DEFAULT_CLASSIFIER_ATOL if atol is None else atol,
        logit_scale=float(np.abs(expected).max()),
        top1_agreement=float((got.argmax(axis=-1) == expected.argmax(axis=-1)).mean()),
    )


def export_classifier(
    folder: Path, tmp: Path, config: dict, atol: float | None, progress: Progress, verbose: bool
) -> tuple[ModelInfo, ValidationReport]:
    """The export, optimize and validate steps of a GPT2ForSequenceClassification checkpoint, into `tmp`."""
    pad, source = pad_token(folder, config)
    with progress.step("export", f"exporting ONNX with Optimum (text-classification, pad token {pad}: {source})"):
        export_onnx(folder, tmp, verbose, eager=needs_eager_attention(config), task=contract.TEXT_CLASSIFICATION, pad_token_id=pad)
    with progress.step("optimize", "keeping Optimum's graph"):
        pass  # one pass over whole texts: no KV cache to rebuild, and --int8/--float16 are refused for classifiers
    info = model_info_from_config(config | {"pad_token_id": pad}, architecture=contract.GPT2_CLASSIFIER)
    with progress.step("validate", "validating against PyTorch"):
        report = validate_classifier(folder, tmp, info, atol)
    return info, report
