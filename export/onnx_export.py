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


def export_onnx(checkpoint: Path, out_dir: Path, verbose: bool = False) -> None:
    """Write model.onnx, config.json, generation_config.json and the tokenizer files to `out_dir`."""
    from optimum.exporters.onnx import main_export
    from transformers import AutoTokenizer

    with quiet_stdout(), quiet_libraries(verbose):
        main_export(
            str(checkpoint),
            output=out_dir,
            task="text-generation-with-past",
            opset=OPSET,
            device="cpu",
            do_validation=False,  # we validate ourselves, with cached steps too
            local_files_only=True,
        )
        if not (out_dir / contract.TOKENIZER_FILE).is_file():
            # A checkpoint with only vocab.json + merges.txt: write the fast tokenizer's tokenizer.json.
            AutoTokenizer.from_pretrained(checkpoint, use_fast=True).save_pretrained(out_dir)
    if not (out_dir / contract.GENERATION_CONFIG_FILE).is_file():
        from transformers import AutoConfig, GenerationConfig

        GenerationConfig.from_model_config(AutoConfig.from_pretrained(checkpoint)).save_pretrained(out_dir)
