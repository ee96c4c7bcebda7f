"""llama.cpp, the runtime a user picking a local GPT-2 runtime compares with: its own
`llama-bench` on GGUFs of the benchmark's checkpoint, at f32, f16, q8_0 and q4_0.

llama.cpp is built once into WORK/llama.cpp from the sources llama-cpp-python's
PyPI sdist vendors (LLAMA_CPP_SDIST; ggml-org/llama.cpp 0c1e57098), without
AMX (its q8_0 kernels die with SIGILL on AMX CPUs: ../shared/toolchain-notes.md).
$GPT2ONNX_LLAMA_CPP_BIN names a folder with llama-bench and llama-quantize to use
instead. The checkpoint goes through llama.cpp's convert_hf_to_gguf.py (to f32
or f16; its GPT2 class wants `n_ctx` in config.json, which save_pretrained no
longer writes) and llama-quantize (q8_0, q4_0).

Its process runs llama-bench instead of the Python workload, one figure at a
time, named as workload.py names ours: decode (depth = the prompt, new_tokens
tokens), per-token latency at each context (depth c, latency_steps tokens),
time to first token (a prefill of the prompt). Flash attention stays off: it
was slower here in 5 of 6 cases. Batch, beams and load have no llama-bench
counterpart. Where llama.cpp can't be built, `Unavailable` says why in one line
and the benchmark goes on without it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ..plan import LLAMA_F16, LLAMA_F32, LLAMA_Q4, LLAMA_Q8, Plan
from .base import Contender

LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"
BIN_ENV = "GPT2ONNX_LLAMA_CPP_BIN"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
TOOLS = ("llama-bench", "llama-quantize")


class Unavailable(RuntimeError):
    """llama.cpp can't be built or run here (the message says why)."""


def _run(command: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> None:
    with open(log, "a") as out:
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise Unavailable(f"`{' '.join(command[:3])} ...` failed ({done.returncode}): see {log}")


def tools(work: Path) -> Path:
    """The folder with llama-bench and llama-quantize: $GPT2ONNX_LLAMA_CPP_BIN, or built once in WORK/llama.cpp."""
    given = os.environ.get(BIN_ENV)
    if given:
        if not all((Path(given) / t).is_file() for t in TOOLS):
            raise Unavailable(f"${BIN_ENV}={given} lacks {' or '.join(TOOLS)}")
        return Path(given)
    root = work / "llama.cpp"
    bin_dir = root / "source" / "build" / "bin"
    if all((bin_dir / t).is_file() for t in TOOLS):
        return bin_dir
    missing = [t for t in ("cmake", "c++") if shutil.which(t) is None]
    if missing:
        raise Unavailable(f"building llama.cpp needs {' and '.join(missing)}: apt-get install cmake build-essential")
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    sdist = next(root.glob("llama_cpp_python-*.tar.gz"), None)
    if sdist is None:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", LLAMA_CPP_SDIST, "-d", str(root)], log)
        sdist = next(root.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(root / "sdist", filter="data")
    shutil.rmtree(root / "source", ignore_errors=True)
    next((root / "sdist").glob("llama_cpp_python-*/vendor/llama.cpp")).rename(root / "source")
    source = root / "source"
    print(f"  llama.cpp: building {', '.join(TOOLS)} from {sdist.name} (3.6 minutes on 2 cores here) ...", flush=True)
    _run(["cmake", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_CUDA=OFF", "-DLLAMA_CURL=OFF",
          "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_OPENSSL=OFF", f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"], log, source)
    _run(["cmake", "--build", "build", "-j", str(len(os.sched_getaffinity(0))), "--target", *TOOLS], log, source)
    return bin_dir


def convert(checkpoint: Path, folder: Path, outtype: str, work: Path) -> Path:
    """checkpoint -> folder/model-OUTTYPE.gguf with llama.cpp's own converter."""
    source = (work / "llama.cpp" / "source") if not os.environ.get(BIN_ENV) else Path(os.environ[BIN_ENV]).parents[1]
    script = source / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise Unavailable(f"no {script}: point ${BIN_ENV} at SOURCE/build/bin of a llama.cpp tree")
    copy = folder / "checkpoint"
    shutil.copytree(checkpoint, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "n_ctx": config["n_positions"]}))
    out = folder / f"model-{outtype}.gguf"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    _run([sys.executable, str(script), str(copy), "--outtype", outtype, "--outfile", str(out)], folder / "convert.log", env=env)
    shutil.rmtree(copy)
    return out


class LlamaCppF32(Contender):
    """llama.cpp's llama-bench on the f32 GGUF."""

    name, label = LLAMA_F32, "llama.cpp f32"
    quant = "f32"

    @classmethod
    def cache_key(cls, checkpoint_key: dict) -> dict:
        return {**checkpoint_key, "llama.cpp": LLAMA_CPP_SDIST, "bin": os.environ.get(BIN_ENV), "quant": cls.quant}

    @classmethod
    def build(cls, checkpoint: Path, folder: Path) -> None:
        work = folder.parent
        bin_dir = tools(work)
        folder.mkdir(parents=True)
        gguf = convert(checkpoint, folder, "f16" if cls.quant == "f16" else "f32", work)
        if cls.quant in ("q8_0", "q4_0"):
            _run([str(bin_dir / "llama-quantize"), str(gguf), str(folder / f"model-{cls.quant}.gguf"), cls.quant], folder / "quantize.log")
            gguf.unlink()
        (folder / "bin.txt").write_text(str(bin_dir))

    @classmethod
    def weights(cls, folder: Path) -> dict | None:
        return None  # the bandwidth bound is reported for gpt2onnx only

    def imports(self) -> None:
        pass

    def load(self) -> None:
        pass

    def own_workload(self, plan: Plan) -> dict:
        """llama-bench's figures, under workload.py's names."""
        folder = Path(self.folder)
        bench = Path((folder / "bin.txt").read_text()) / "llama-bench"
        model = next(folder.glob("model-*.gguf"))

        def tok_s(prompt: int, new: int, depth: int = 0) -> float:
            command = [str(bench), "-m", str(model), "-t", str(self.threads), "-r", "1", "-fa", "0", "-o", "json",
                       "-p", str(prompt), "-n", str(new), "-d", str(depth)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"llama-bench failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            return json.loads(done.stdout)[0]["avg_ts"]

        p = plan.prompt_tokens
        figures = {"decode_tok_s": tok_s(0, plan.new_tokens, p)}
        figures[f"ttft_{p}_ms"] = 1e3 * p / tok_s(p, 0)
        for c in plan.contexts:
            figures[f"latency_ctx{c}_ms"] = 1e3 / tok_s(0, plan.latency_steps, c)
        figures[f"ttft_{plan.long_prompt}_ms"] = 1e3 * plan.long_prompt / tok_s(plan.long_prompt, 0)
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest llama-bench
        figures["gguf_bytes"] = model.stat().st_size
        return figures


class LlamaCppF16(LlamaCppF32):
    name, label, quant = LLAMA_F16, "llama.cpp f16", "f16"


class LlamaCppQ8(LlamaCppF32):
    name, label, quant = LLAMA_Q8, "llama.cpp q8_0", "q8_0"


class LlamaCppQ4(LlamaCppF32):
    name, label, quant = LLAMA_Q4, "llama.cpp q4_0", "q4_0"
