"""Choosing onnxruntime execution providers: "auto", "cpu" or "cuda".

onnxruntime-gpu lists CUDA among its providers whether or not CUDA can run, and
quietly falls back to CPU when its libraries are missing. So before asking for
CUDA we check the libraries ourselves, and after the session is made we read
`session.get_providers()`. Nothing here ever runs on the CPU silently.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import warnings
from dataclasses import dataclass

import onnxruntime as ort

from .errors import ProviderError, UsageError

PROVIDERS = ("auto", "cpu", "cuda")
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
CUDA_INSTALL_HINT = "install the CUDA and cuDNN libraries: pip install 'gpt2onnx[cuda]'"
# The CUDA provider's options. onnxruntime's default lets float32 MatMuls run in TF32 (10-bit
# mantissas) on Ampere and later: a float32 export would then compute less exactly than PyTorch's
# float32 (TF32 off for matmuls by default), and greedy ids could part. SkipLayerNorm's strict mode
# accumulates float16 the way PyTorch's LayerNorm does.
CUDA_OPTIONS = {"use_tf32": "0", "enable_skip_layer_norm_strict_mode": "1"}


class ProviderFallbackWarning(RuntimeWarning):
    """provider="auto" wanted CUDA and is running on the CPU instead."""


@dataclass(frozen=True)
class ProviderPlan:
    """What to ask onnxruntime for, and why CUDA was left out if it was."""

    requested: str  # "auto" | "cpu" | "cuda", as the caller asked
    providers: tuple[str, ...]  # onnxruntime provider names, in priority order
    cuda_problem: str | None  # why CUDA can't run here; None if it looks usable


def _cuda_major() -> str:
    from onnxruntime.capi import build_and_package_info as info

    return str(getattr(info, "cuda_version", "") or "12").split(".")[0]


@functools.lru_cache(maxsize=1)
def cuda_problem() -> str | None:
    """Why onnxruntime's CUDA provider can't run on this machine, or None if it looks usable."""
    if CUDA_EP not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu, not onnxruntime)"
    # CUDA/cuDNN from pip's nvidia-* wheels are found only after preload_dlls();
    # it prints what it can't find, which we report in our own words instead.
    if hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            ort.preload_dlls()
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found (libcuda.so.1 is missing)"
    major = _cuda_major()
    for lib in (f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}", "libcudnn.so.9"):
        try:
            ctypes.CDLL(lib)
        except OSError:
            return f"{lib} is missing: {CUDA_INSTALL_HINT}"
    return None


def plan(provider: str, model_problem: str | None = None) -> ProviderPlan:
    """Decide which onnxruntime providers to ask for; `model_problem`: why this model can't run on
    CUDA even where CUDA works (its graph has ops onnxruntime runs on the CPU only), or None."""
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    if provider == "cpu":
        return ProviderPlan(provider, (CPU_EP,), None)
    problem = cuda_problem() or model_problem
    if problem is not None:
        if provider == "cuda":
            raise ProviderError(f"CUDA was asked for but can't run here: {problem}")
        return ProviderPlan(provider, (CPU_EP,), problem)
    return ProviderPlan(provider, (CUDA_EP, CPU_EP), None)


def session_providers(plan_: ProviderPlan) -> list:
    """The plan's providers as onnxruntime's InferenceSession takes them, with CUDA's options."""
    return [(name, CUDA_OPTIONS) if name == CUDA_EP else name for name in plan_.providers]


def settle(plan_: ProviderPlan, active: list[str]) -> tuple[str, str | None]:
    """Given the session's actual providers, return ("cuda"|"cpu", fallback note or None).

    Raises for provider="cuda" without CUDA; warns for provider="auto" on the CPU.
    """
    if CUDA_EP in active:
        return "cuda", None
    if plan_.requested == "cpu":
        return "cpu", None
    problem = plan_.cuda_problem or "onnxruntime could not start its CUDA provider (see its log above)"
    if plan_.requested == "cuda":
        raise ProviderError(f"CUDA was asked for but can't run here: {problem}")
    note = f"running on CPU: {problem}"
    warnings.warn(note, ProviderFallbackWarning, stacklevel=3)
    return "cpu", note
