"""The contenders of the GPU benchmark (benchmarks/gpu.py) on one device, "cuda" or
"cpu" (the rehearsal): gpt2onnx, Optimum's ORTModelForCausalLM, transformers'
GPT2LMHeadModel, and the same compiled by torch.compile; how each one's model is
built into --work; ours behind `gpt2onnx serve`; and the device's memory bandwidth.

They are the CPU benchmark's contenders (benchmarks/contenders/) with the device
added: the same generate() calls, streamers and Trace of step times. What changes
is where the model and its inputs live, and that nothing may fall back to the CPU
unseen: every load checks the provider it got.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from .contenders.hf import Optimum, Transformers
from .contenders.onnx_weights import weight_bytes
from .contenders.ours import Gpt2onnxFp32, _Quantized
from .models import Cache, versions

OURS, OPTIMUM, TORCH, COMPILED = "ours", "optimum", "transformers", "transformers+compile"
CONTENDERS = (OURS, OPTIMUM, TORCH, COMPILED)  # measurement order of repeat 0
EP = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}  # onnxruntime's provider per device


class OnDevice:
    """A transformers or Optimum model whose generate() takes the CPU tensors that
    HFGenerate.generate makes and runs them on the model's device; anything else is the
    model's own. `grad_mode`: run generate() under no_grad instead of the caller's
    inference_mode (HF's torch.compile recipe is written for no_grad; CUDA graphs are
    recorded from plain tensors)."""

    def __init__(self, model, device, grad_mode: bool = False):
        self.model, self.device, self.grad_mode = model, device, grad_mode

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, input_ids, attention_mask, **kwargs):
        import torch

        with torch.inference_mode(False) if self.grad_mode else contextlib.nullcontext(), torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device), **kwargs)
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()  # the Trace's end: every kernel of the call has finished
        return out


class OnDeviceMixin:
    """The device and the float type, beside the CPU contender's folder and threads."""

    def __init__(self, folder: str, threads: int, device: str, half: bool):
        super().__init__(folder, threads)
        self.device, self.half = device, half


class Ours(OnDeviceMixin, Gpt2onnxFp32):
    """gpt2onnx's export, run by gpt2onnx.runtime on the device through model.run(...) and its deltas."""

    def load(self) -> None:
        from gpt2onnx.runtime import load

        # On CUDA the graph runs on the GPU: onnxruntime's own thread count is left to it.
        self.model = load(self.folder, provider=self.device, threads=self.threads if self.device == "cpu" else None)
        assert self.model.provider == self.device, f"gpt2onnx runs on {self.model.provider}, not {self.device}"


class Gpt2onnxFp16(_Quantized):
    """`gpt2onnx export --float16` (GraphPlan(weights="float16")): the export for CUDA."""

    name, label, precision = "gpt2onnx-fp16", "gpt2onnx fp16", "float16"


class OptimumOnDevice(OnDeviceMixin, Optimum):
    """Optimum's export run by ORTModelForCausalLM on the device (IO binding on CUDA: the KV cache stays there)."""

    def load(self) -> None:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForCausalLM

        options = ort.SessionOptions()
        if self.device == "cpu":
            options.intra_op_num_threads = self.threads
        model = ORTModelForCausalLM.from_pretrained(
            self.folder, provider=EP[self.device], session_options=options, use_io_binding=self.device == "cuda", use_cache=True
        )
        assert model.providers[0] == EP[self.device], f"Optimum runs on {model.providers}, not {EP[self.device]}"
        self.model = OnDevice(model, model.device)


class TorchOnDevice(OnDeviceMixin, Transformers):
    """GPT2LMHeadModel in float32 or float16 on the device, generate(use_cache=True)."""

    def load(self) -> None:
        import torch
        from transformers import GPT2LMHeadModel

        dtype = torch.float16 if self.half else torch.float32
        model = GPT2LMHeadModel.from_pretrained(self.folder, dtype=dtype).to(self.device).eval()
        self.model = OnDevice(model, torch.device(self.device))


class Compiled(TorchOnDevice):
    """HF's documented torch.compile recipe: a static KV cache and the forward compiled with
    mode="reduce-overhead" (CUDA graphs), fullgraph=True. Its first calls at each shape
    compile: gpu.py warms it up on every shape it measures, under a time cap."""

    def load(self) -> None:
        import torch

        super().load()
        model = self.model.model
        # Every (batch, cache length) is a shape of its own; the default limit (8) would send the
        # later ones back to eager mode quietly.
        torch._dynamo.config.cache_size_limit = 64
        model.generation_config.cache_implementation = "static"
        # On CUDA, generate() would also compile __call__ around this forward for its decode steps
        # (its auto-compile for static caches): off, so CUDA runs the one compiled forward that the
        # CPU rehearsal (--compile-on-cpu) checks, for the prefill and every step.
        model.generation_config.disable_compile = True
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        self.model = OnDevice(model, self.model.device, grad_mode=True)


CLASSES = {OURS: Ours, OPTIMUM: OptimumOnDevice, TORCH: TorchOnDevice, COMPILED: Compiled}


def contender(name: str, folder: str, threads: int, device: str, half: bool):
    """The contender `name`, not loaded yet (its imports() and load() come next)."""
    runner = CLASSES[name](folder, threads, device, half)
    runner.name = name  # the key in gpu.json
    return runner


def one_line(e: BaseException) -> str:
    """An exception as the one line a report shows: the root cause's type and its message's last line."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]


@contextlib.contextmanager
def time_cap(seconds: int):
    """Raise TimeoutError in the main thread after `seconds` (SIGALRM): torch.compile's warm-up
    is Python waiting on its compilers, so the signal gets through. torch may wrap the error in
    one of its own: the dict it yields says {"fired": True} then."""
    state = {"fired": False}

    def expire(signum, frame):
        state["fired"] = True
        raise TimeoutError(f"over its {seconds} s cap")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield state
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# gpt2onnx's float32 export on CUDA: runtime/session.py's cuda_blocker refuses it (the reason, in its words).
FP32_ON_CUDA = "onnxruntime's GroupQueryAttention runs on CUDA in float16 only: gpt2onnx runs float16 exports there"


# --- the models in --work --------------------------------------------------------------


def optimum_fp16(checkpoint: Path, folder: Path) -> None:
    """Optimum's float16 export: the model cast to float16 on CUDA, then traced (on the CPU
    its trace mixes float and float16 in LayerNormalization, which onnxruntime refuses)."""
    from optimum.exporters.onnx import main_export

    main_export(str(checkpoint), output=folder, task="text-generation-with-past", device="cuda", dtype="fp16")


def build_all(root: Path, shape: dict, precisions: list[str], device: str, contenders: list[str], save) -> dict:
    """The checkpoint and every export the named contenders run at these precisions, in
    root (each reused while what it was built from is unchanged: models.Cache).

    Returns {artifact: {"folder": str, "seconds": float | None (cached)} or {"error": line}};
    a failed export is that one line and the others still get built. save(that dict) runs
    after every step, so a process killed midway still tells what it had.
    """
    cache = Cache(root)
    pkg = versions("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime-gpu", "onnxruntime", "accelerate")
    key = {"shape": shape, "seed": 0, **pkg}
    out: dict = {}

    def step(name: str, build, step_key: dict) -> None:
        start = time.perf_counter()
        try:
            folder, seconds = cache.get(name, step_key, build)
            out[name] = {"folder": str(folder), "seconds": seconds}
            if name != "checkpoint":  # the bytes each token reads: the bandwidth bound's divisor
                out[name]["weights"] = weight_bytes(folder)
        except Exception as e:  # noqa: BLE001 - one export's failure is a line of the report
            traceback.print_exc()  # the whole story goes to the log
            out[name] = {"error": one_line(e)}
        print(f"  {name}: {out[name].get('error') or 'ready'} ({time.perf_counter() - start:.1f} s)", flush=True)
        save(out)

    def checkpoint(folder):
        from gpt2onnx.export.random_model import make_random_gpt2

        make_random_gpt2(folder, seed=0, **shape)

    step("checkpoint", checkpoint, key)
    if "error" in out["checkpoint"]:
        return out
    ckpt = Path(out["checkpoint"]["folder"])
    for precision in precisions:
        if OURS in contenders and precision == "fp32" and device == "cuda":
            out["ours-fp32"] = {"error": f"not run on CUDA: {FP32_ON_CUDA}"}  # refused by load(provider="cuda"): not built
            save(out)
        elif OURS in contenders:
            ours = Gpt2onnxFp32 if precision == "fp32" else Gpt2onnxFp16
            step(f"ours-{precision}", lambda f, c=ours: c.build(ckpt, f), ours.cache_key(key))
        if OPTIMUM not in contenders:
            continue
        if precision == "fp32":
            step("optimum-fp32", lambda f: Optimum.build(ckpt, f), key)
        elif device == "cuda":
            step("optimum-fp16", lambda f: optimum_fp16(ckpt, f), {**key, "dtype": "fp16"})
        else:
            out["optimum-fp16"] = {"error": "skipped: Optimum's float16 export needs CUDA (main_export(dtype='fp16', device='cuda'))"}
            print(f"  optimum-fp16: {out['optimum-fp16']['error']}", flush=True)
            save(out)
    return out


# --- ours behind gpt2onnx serve ---------------------------------------------------------


def serve(folder: str, device: str, slots: int, clients: tuple[int, ...], log: Path) -> dict:
    """`gpt2onnx serve` on the device under benchmarks/serving.py's load generator (its measure():
    a warm-up level of 2 clients, then each level of `clients`); stopped after."""
    from .serving import NEW_TOKENS, Server, measure

    print(f"  gpt2onnx serve --provider {device} --slots {slots}", flush=True)
    with socket.socket() as s:  # a port nothing listens on now, picked by the OS
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "gpt2onnx.cli", "serve", "--model", folder, "--provider", device, "--port", str(port),
               "--slots", str(slots), "--max-queue", "256"]  # fmt: skip
    server = Server(f"gpt2onnx-{device}", device, command, {"min_new_tokens": NEW_TOKENS})
    return {"levels": measure(server, port, clients, log), "slots": slots}


# --- memory bandwidth ---------------------------------------------------------------------


def bandwidth(device: str, nbytes: int, repeats: int, threads: int) -> dict:
    """The device's memory bandwidth in GB/s, best of `repeats` passes over `nbytes`.

    CUDA: a device-to-device copy timed by CUDA events, counting the bytes read and the
    bytes written (what a decode step does with weights is read them: a copy is the
    closest plain kernel). CPU: benchmarks/machine.py's numpy read probe.
    """
    if device == "cpu":
        from .machine import bandwidth_probe
        from .plan import Plan

        probe = bandwidth_probe(Plan(shape={}, probe_bytes=nbytes, probe_repeats=repeats), threads)
        return {"gbs": probe["read_gbs"], "how": f"numpy read of {nbytes / 2**20:.0f} MiB, {threads} threads, best of {repeats}", "probe": probe}
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")  # [nbytes]: contents don't matter to a copy
    dst = torch.empty_like(src)  # [nbytes]
    dst.copy_(src)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)  # elapsed_time is in ms
    del src, dst
    torch.cuda.empty_cache()
    return {"gbs": 2 * nbytes / best / 1e9, "how": f"device-to-device copy of {nbytes / 2**30:.1f} GiB, read + written bytes, best of {repeats}"}
