"""The whole export, made atomic: checkpoint -> ONNX (Optimum) -> the fast graph
(optimize.py: GroupQueryAttention, fused, int8 or float16 on request) -> validation
-> manifest, written into a hidden folder beside OUTPUT_DIR and renamed into place
at the end.

An interrupted or failed export leaves no folder at OUTPUT_DIR, and a partial
folder never has a manifest, so nothing half-written looks like a model.

--force swaps folders with two renames (a directory can't replace a non-empty one
in one rename): OUTPUT_DIR to a hidden `.OUT.old-PID`, then the new model to
OUTPUT_DIR. An export killed between them leaves no OUTPUT_DIR but the old model
whole under `.OUT.old-PID`; the next export to OUTPUT_DIR puts it back before it
looks at OUTPUT_DIR (or deletes it when OUTPUT_DIR is there), so no kill loses
both the old model and the new one.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpt2onnx.runtime import contract
from gpt2onnx.runtime.errors import Gpt2OnnxError, UsageError
from gpt2onnx.runtime.manifest import ModelInfo

from . import checkpoint
from .manifest import model_info_from_config, write_manifest
from .onnx_export import copy_checkpoint_files, export_onnx, needs_eager_attention
from .optimize import GraphPlan, optimize
from .progress import Progress
from .validate import ValidationReport, validate

PARTIAL = ".partial-"
OLD = ".old-"
MANIFEST = "manifest.json"  # written last into a new folder, removed first from an old one


class ValidationFailed(Gpt2OnnxError):
    """The ONNX graph's logits are further from PyTorch's than the tolerance."""


@dataclass
class ExportReport:
    """What an export wrote and measured (the --json output)."""

    source: str  # MODEL as given
    checkpoint: str  # the local folder it resolved to
    output_dir: str
    files: dict[str, int]  # file name -> bytes
    total_bytes: int
    validation: dict  # max_abs_diff, prefill/cached diffs, atol
    graph: dict = field(default_factory=dict)  # kv_cache layout, weights, and why the plain graph was kept if it was
    seconds: dict[str, float] = field(default_factory=dict)  # per step and total

    def to_dict(self) -> dict:
        return asdict(self)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(parent: Path, name: str, kind: str) -> list[Path]:
    """Hidden folders an earlier export to `parent / name` left behind, whose process is gone."""
    found = []
    for path in sorted(parent.glob(f".{name}{kind}*")):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            found.append(path)
    return found


def _remove_model(path: Path) -> None:
    """Delete a model folder, its manifest first: a half-deleted folder never looks like a model."""
    (path / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _sweep_stale(parent: Path, name: str) -> None:
    """Clean up after earlier exports to the same OUTPUT_DIR whose process is gone: partial
    folders are deleted; an old model set aside by --force goes back to OUTPUT_DIR if the export
    died before the new one took its place (it is whole: its manifest is there), else it is deleted."""
    for path in _stale(parent, name, PARTIAL):
        shutil.rmtree(path, ignore_errors=True)
    out = parent / name
    for old in _stale(parent, name, OLD):
        if not out.exists() and (old / MANIFEST).is_file():
            old.rename(out)
        else:
            _remove_model(old)


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is a file: choose another OUTPUT_DIR")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty: pass --force to replace it, or choose another OUTPUT_DIR")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out.parent}: {e.strerror}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {out.parent}: permission denied; choose another OUTPUT_DIR")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`, setting aside and then deleting a model already there."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}{OLD}{os.getpid()}")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:  # an error or Ctrl-C between the renames: the old model goes back
        if not out.exists():
            old.rename(out)
        raise
    _remove_model(old)


def _settle_plan(plan: GraphPlan, config: dict, architecture: str = contract.GPT2_LM) -> tuple[GraphPlan, str | None]:
    """The plan this checkpoint allows, and why Optimum's graph is kept instead (None if it isn't)."""
    from . import fast_graph

    if contract.TASKS[architecture] == contract.TEXT_CLASSIFICATION:
        if plan != GraphPlan() and plan != GraphPlan("optimum"):
            flag = f"--{plan.weights}" if plan.weights != "float32" else "--kv-cache-dtype"
            raise UsageError(f"{flag} is for text-generation exports; a {architecture} checkpoint exports at float32: drop {flag}")
        return GraphPlan("optimum"), None  # one pass over whole texts, no KV cache: Optimum's graph as it comes
    if architecture == contract.OPENAI_GPT_LM:
        if plan.graph == "optimum":
            raise UsageError("Optimum has no ONNX exporter for GPT-1 (openai-gpt): drop --graph optimum")
        if plan.kv_int8:
            raise UsageError("--kv-cache-dtype int8 is calibrated on GPT-2's cache; GPT-1 exports keep a float32 cache: drop it")
    if plan.kv_int8 and plan.weights == "float16":
        raise UsageError("--kv-cache-dtype int8 is for CPU exports; a float16 export keeps a float16 KV cache: drop one of them")
    # What only the GroupQueryAttention graph builds: the first such flag names the problem.
    needs_gqa = [flag for flag, asked in ((f"--{plan.weights}", plan.weights != "float32"), ("--kv-cache-dtype int8", plan.kv_int8)) if asked]
    if plan.graph == "optimum":
        if needs_gqa:
            raise UsageError(f"{needs_gqa[0]} needs the GroupQueryAttention graph: drop --graph optimum")
        return plan, None
    problem = fast_graph.supports(config)
    if problem is None:
        return plan, None
    if architecture == contract.OPENAI_GPT_LM:
        raise UsageError(f"gpt2onnx's graph can't express this GPT-1 checkpoint ({problem}), and Optimum has no exporter for GPT-1")
    if needs_gqa:
        raise UsageError(f"{needs_gqa[0]} needs the GroupQueryAttention graph, which can't express this checkpoint: {problem}")
    return GraphPlan("optimum", "float32"), problem


def _kv_scales(checkpoint_dir: Path, export_dir: Path, config: dict) -> list:
    """The int8 KV cache's scales, calibrated on the packaged text with the export's own tokenizer."""
    from gpt2onnx.runtime.tokenizer import Tokenizer

    from . import kv_quant
    from .validate import PROMPTS

    tokenizer = Tokenizer(export_dir / contract.TOKENIZER_FILE)
    return kv_quant.calibrate(checkpoint_dir, kv_quant.calibration_sequences(tokenizer.encode, int(config["n_positions"]), PROMPTS))


def _export_generator(
    folder: Path, tmp: Path, config: dict, architecture: str, plan: GraphPlan, atol: float | None, progress: Progress, verbose: bool
) -> tuple[ModelInfo, ValidationReport]:
    """The export, optimize and validate steps of a text-generation model, into `tmp`."""
    if architecture == contract.OPENAI_GPT_LM:  # no Optimum exporter: the graph is built from PyTorch's weights
        with progress.step("export", "copying GPT-1's config and tokenizer"):
            copy_checkpoint_files(folder, tmp)
    else:
        with progress.step("export", "exporting ONNX with Optimum"):
            export_onnx(folder, tmp, verbose=verbose, eager=needs_eager_attention(config))
    what = "keeping Optimum's graph" if plan.graph == "optimum" else f"building the GroupQueryAttention graph ({plan.weights})"
    with progress.step("optimize", what):
        kv_scales = _kv_scales(folder, tmp, config) if plan.kv_int8 else None
        kv_cache = optimize(tmp, config, plan, kv_scales, checkpoint=folder if architecture == contract.OPENAI_GPT_LM else None)
    dtype = "float16" if plan.weights == "float16" else "float32"
    info = model_info_from_config(config, dtype, kv_cache, plan.weights, "int8" if plan.kv_int8 else None, architecture)
    with progress.step("validate", "validating against PyTorch"):
        report = validate(folder, tmp, info, atol)
    return info, report


def export_model(
    model: str,
    output_dir: str | Path,
    force: bool = False,
    atol: float | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
    plan: GraphPlan = GraphPlan(),
) -> ExportReport:
    """Export `model` (a checkpoint folder or hub id) to `output_dir`, validated against PyTorch.

    `plan` picks the graph: by default GroupQueryAttention with an in-place KV cache
    in float32; GraphPlan(weights="int8") for int8, GraphPlan(graph="optimum") for
    Optimum's graph as it comes.
    """
    progress = progress or Progress(5, enabled=False)
    started = time.perf_counter()
    out = Path(output_dir).expanduser().absolute()
    _sweep_stale(out.parent, out.name)  # first: an old model put back is an OUTPUT_DIR that needs --force
    _check_output(out, force)

    with progress.step("load", f"checking {model}"):
        folder = checkpoint.resolve(model)
        config, architecture = checkpoint.check_checkpoint(folder)
        plan, kept = _settle_plan(plan, config, architecture)
    tmp = out.with_name(f".{out.name}{PARTIAL}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if contract.TASKS[architecture] == contract.TEXT_CLASSIFICATION:
            from .classifier import export_classifier

            info, report = export_classifier(folder, tmp, config, atol, progress, verbose)
        else:
            info, report = _export_generator(folder, tmp, config, architecture, plan, atol, progress, verbose)
        if not report.passed:
            raise ValidationFailed(
                f"ONNX logits differ from PyTorch's by {report.max_abs_diff:.3g} > atol {report.atol:g}: "
                "nothing was written (pass a larger --atol to accept it)"
            )
        with progress.step("manifest", "hashing files and writing the manifest"):
            write_manifest(tmp, info, model, report)
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = {path.name: path.stat().st_size for path in sorted(out.iterdir()) if path.is_file()}
    seconds = dict(progress.seconds, total=round(time.perf_counter() - started, 3))
    return ExportReport(
        source=model,
        checkpoint=str(folder),
        output_dir=str(out),
        files=files,
        total_bytes=sum(files.values()),
        graph={
            "architecture": info.architecture,
            "kv_cache": info.kv_cache,
            "weights": info.weights,
            "kv_cache_dtype": info.kv_dtype,
            "plain_graph_because": kept,
            **({"labels": list(info.labels), "pad_token_id": info.pad_token_id} if info.labels else {}),
        },
        validation={
            "max_abs_diff": report.max_abs_diff,
            "prefill_max_abs_diff": report.prefill_max_abs_diff,
            "cached_max_abs_diff": report.cached_max_abs_diff,
            "positions_checked": report.positions_checked,
            "atol": report.atol,
            "logit_scale": report.logit_scale,
            "top1_agreement": report.top1_agreement,
        },
        seconds=seconds,
    )
