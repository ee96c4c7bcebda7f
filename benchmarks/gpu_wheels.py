"""The wheels the GPU check carries to the device machine (benchmarks/gpu_check.sh),
downloaded here for its Python 3.12 into the git-ignored folder .gpuwheel/:

- small/: the pinned exporter stack where the device's versions differ
  (transformers 4.57.6 and what it pins: tokenizers, huggingface_hub; optimum,
  optimum-onnx), the server's and the tests' packages the device lacks, at this
  venv's versions (what CI tests), with their dependencies' closure minus what
  the device image already holds;
- ort/: onnxruntime-gpu (255 MB, more than one call carries) split into parts
  that each fit one call beside the working tree, and its sha256.

    .venv/bin/python -m benchmarks.gpu_wheels [--part-mb 34]

Nothing fetches on the device; this runs where PyPI answers.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / ".gpuwheel"
ORT = "onnxruntime-gpu"
# What the GPU check imports beyond the device image's versions (KINDS.md lists the image).
ROOTS = ("transformers", "optimum", "optimum-onnx", "fastapi", "uvicorn", "openai")
# The device image's packages at versions these accept (KINDS.md, 2026-11): not carried.
ON_DEVICE = set(
    "accelerate anyio certifi charset-normalizer click filelock fsspec h11 hf-xet httpcore httpx idna jinja2 markupsafe "
    "mpmath networkx numpy onnx packaging prometheus-client protobuf pyyaml regex requests safetensors sympy torch tqdm "
    "triton urllib3 zipp setuptools nvidia-cublas nvidia-cuda-runtime nvidia-cudnn-cu13".split()
)
# Pinned by transformers 4.57.6 below the image's versions (tokenizers 0.23.2, huggingface_hub 1.33): carried.
OLDER_THAN_DEVICE = {"tokenizers", "huggingface-hub", "transformers"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure() -> dict[str, str]:
    """{name: version} to carry: ROOTS and their dependencies (this venv's versions), minus the image's."""
    todo, seen = list(ROOTS), {}
    while todo:
        name = norm(todo.pop())
        if name in seen or (name in ON_DEVICE and name not in OLDER_THAN_DEVICE):
            continue
        dist = md.distribution(name)
        seen[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(DEVICE_ENV):
                todo.append(req.name)
    return seen


def download(specs: list[str], dest: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dest), *specs]
    subprocess.run(cmd, check=True)


def tree_bytes() -> int:
    """What every device call sends besides its carry: tracked and untracked-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sum((REPO / n).stat().st_size for n in names.decode().split("\0") if n and (REPO / n).is_file())


def calls() -> list[list[Path]]:
    """The carry of each receive call (benchmarks/gpu_check.sh): the small wheels with the last,
    smallest part first (the background exports need them), then one part per call."""
    parts = sorted((FOLDER / "ort").glob("*.part*"))
    return [[FOLDER / "small", FOLDER / "ort" / "SHA256", parts[-1]], *([p] for p in parts[:-1])]


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part-mb", type=int, default=34, help="size of each onnxruntime-gpu part (default 34: one part and the working tree fit a call's 64 MiB)")
    args = parser.parse_args()
    shutil.rmtree(FOLDER, ignore_errors=True)
    small, ort = FOLDER / "small", FOLDER / "ort"
    small.mkdir(parents=True)
    ort.mkdir()
    wanted = closure()
    download([f"{name}=={version}" for name, version in sorted(wanted.items())], small)
    download([f"{ORT}=={md.version(ORT)}"], ort)
    wheel = next(ort.glob("*.whl"))
    (ort / "SHA256").write_text(f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {wheel.name}\n")
    subprocess.run(["split", "-b", f"{args.part_mb}M", "-d", wheel.name, wheel.name + ".part"], cwd=ort, check=True)
    wheel.unlink()
    tree = tree_bytes()
    print(f"each call sends the working tree: {tree / 2**20:.1f} MiB")
    for n, carry in enumerate(calls(), start=1):
        total = tree + sum(size(p) for p in carry)
        print(f"call {n}: {total / 2**20:5.1f} MiB  carry={[str(p.relative_to(REPO)) for p in carry]}")
        if total > 64 * 2**20:
            print(f"call {n} is over the 64 MiB a call carries: run again with a smaller --part-mb", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
