"""Running Optimum's ONNX exporter on a GPT-2 checkpoint.

Task `text-generation-with-past`: one decoder graph that takes past keys and
values (an empty past on the first step). With accelerate installed the tied
wte/lm_head weight is stored once; above 2 GB Optimum writes external data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

from gpt2onnx.runtime import contract

OPSET = 18
EXTERNAL_DATA_FILE = contract.MODEL_FILE + "_data"  # Optimum's name for the weights of a model over 2 GB


def fits_one_file(model) -> bool:
    """Whether a ModelProto stays under protobuf's 2 GB limit (ByteSize raises above it under protobuf 7)."""
    import onnx
    from google.protobuf.message import EncodeError

    # The model's ByteSize serializes all of it: add up the initializers one at a time first.
    if sum(tensor.ByteSize() for tensor in model.graph.initializer) >= onnx.checker.MAXIMUM_PROTOBUF:
        return False
    try:
        return model.ByteSize() < onnx.checker.MAXIMUM_PROTOBUF
    except (EncodeError, ValueError):
        return False


def save_onnx(model, save_path, one_file: bool | None = None) -> None:
    """Write a ModelProto as model.onnx, with its weights in model.onnx_data when it passes 2 GB
    (`one_file`: fits_one_file's answer, when the caller already has it)."""
    import onnx

    save_path = Path(save_path)
    save_path.unlink(missing_ok=True)
    (save_path.parent / EXTERNAL_DATA_FILE).unlink(missing_ok=True)
    if fits_one_file(model) if one_file is None else one_file:
        onnx.save(model, str(save_path))
        return
    onnx.save(
        model,
        str(save_path),
        save_as_external_data=True,
        location=EXTERNAL_DATA_FILE,
        all_tensors_to_one_file=True,
        convert_attribute=True,
        size_threshold=100,
    )


def _save_large_aware(model, save_path) -> None:
    """optimum's check_and_save_model, made to work for models over 2 GB.

    optimum-onnx 0.1.0 asks `model.ByteSize()` first, which raises under protobuf 7
    for a proto over 2 GB, and it would then save it as one file anyway. Small
    models go through optimum's own function unchanged.
    """
    import onnx
    from optimum.onnx import graph_transformations

    if fits_one_file(model):
        return graph_transformations._check_and_save_model_unpatched(model, save_path)
    save_onnx(model, save_path, one_file=False)
    onnx.checker.check_model(str(save_path))


@contextlib.contextmanager
def large_model_support():
    """Route optimum's post-processing save through _save_large_aware while exporting."""
    from optimum.onnx import graph_transformations

    original = graph_transformations.check_and_save_model
    graph_transformations._check_and_save_model_unpatched = original
    graph_transformations.check_and_save_model = _save_large_aware
    try:
        yield
    finally:
        graph_transformations.check_and_save_model = original


def _remove_orphan_tensor_files(folder: Path) -> None:
    """torch writes one file per tensor for a model over 2 GB; once the model is
    re-saved into model.onnx_data they are orphans. Keep only what the graph references."""
    import onnx

    if not (folder / EXTERNAL_DATA_FILE).is_file():
        return
    model = onnx.load(str(folder / contract.MODEL_FILE), load_external_data=False)
    referenced = {
        entry.value
        for tensor in onnx.external_data_helper._get_all_tensors(model)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for path in folder.iterdir():
        if path.is_file() and path.suffix not in (".json", ".txt", ".onnx") and path.name not in referenced:
            path.unlink()


def needs_eager_attention(config: dict) -> bool:
    """Whether transformers must run GPT-2's eager attention to honour this config.

    transformers 4.57's SDPA attention (its default) ignores scale_attn_weights=false and
    scale_attn_by_inverse_layer_idx (transformers#44380, fixed after 4.57); the eager one,
    the reference, applies them. So the export traces, and validation compares with, eager."""
    return not config.get("scale_attn_weights", True) or bool(config.get("scale_attn_by_inverse_layer_idx"))


@contextlib.contextmanager
def eager_attention(on: bool):
    """While on, Optimum loads the checkpoint with attn_implementation="eager" (needs_eager_attention)."""
    if not on:
        yield
        return
    from optimum.exporters.tasks import TasksManager

    original = TasksManager.get_model_from_task

    def eager(*args, **kwargs):
        return original(*args, **{**kwargs, "attn_implementation": "eager"})

    TasksManager.get_model_from_task = staticmethod(eager)
    try:
        yield
    finally:
        TasksManager.get_model_from_task = original


@contextlib.contextmanager
def quiet_stdout():
    """Send everything written to fd 1 (Python or C) to stderr, so --json stdout stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def quiet_libraries(verbose: bool):
    """Silence the exporter's known-harmless warnings (TracerWarning, deprecations) unless verbose."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("optimum", "transformers", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    import transformers

    hf_level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            transformers.logging.set_verbosity(hf_level)
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _write_generation_config(checkpoint: Path, out_dir: Path) -> None:
    """generation_config.json: the checkpoint's own, else the one transformers derives from its config."""
    from transformers import AutoConfig, GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(checkpoint)
    except OSError:  # no generation_config.json
        generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(checkpoint))
    generation.save_pretrained(out_dir)


def copy_checkpoint_files(checkpoint: Path, out_dir: Path) -> None:
    """What Optimum writes beside model.onnx, for a model it has no exporter for (GPT-1):
    config.json, generation_config.json and the fast tokenizer's files (tokenizer.json)."""
    from transformers import AutoConfig, AutoTokenizer

    out_dir.mkdir(parents=True)
    AutoConfig.from_pretrained(checkpoint).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(checkpoint, use_fast=True).save_pretrained(out_dir)
    _write_generation_config(checkpoint, out_dir)


GENERATION_TASK = "text-generation-with-past"


def export_onnx(
    checkpoint: Path, out_dir: Path, verbose: bool = False, eager: bool = False, task: str = GENERATION_TASK, pad_token_id: int | None = None
) -> None:
    """Write model.onnx, config.json, the tokenizer files and (generators) generation_config.json to
    `out_dir`. `eager`: trace transformers' eager attention (needs_eager_attention); `task`: Optimum's
    task, "text-classification" for a classifier, whose `pad_token_id` Optimum writes into config.json."""
    from optimum.exporters.onnx import main_export
    from transformers import AutoTokenizer

    with quiet_stdout(), quiet_libraries(verbose), large_model_support(), eager_attention(eager):
        main_export(
            str(checkpoint),
            output=out_dir,
            task=task,
            opset=OPSET,
            device="cpu",
            do_validation=False,  # we validate ourselves: cached steps, or a padded batch
            local_files_only=True,
            pad_token_id=pad_token_id,  # a classifier's, used where config.json has none
        )
        _remove_orphan_tensor_files(out_dir)
        if not (out_dir / contract.TOKENIZER_FILE).is_file():
            # A checkpoint with only vocab.json + merges.txt: write the fast tokenizer's tokenizer.json.
            AutoTokenizer.from_pretrained(checkpoint, use_fast=True).save_pretrained(out_dir)
    if task == GENERATION_TASK and not (out_dir / contract.GENERATION_CONFIG_FILE).is_file():
        _write_generation_config(checkpoint, out_dir)
