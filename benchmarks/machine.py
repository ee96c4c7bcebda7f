"""The machine the benchmark runs on: what it is (CPU, cores, memory, versions,
commit), its memory read bandwidth, and CPU-time accounting that tells how
busy other processes kept it."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import numpy as np

from .models import versions
from .plan import Plan

REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def machine(threads: int) -> dict:
    cpu = cpu_name()
    mem = None
    if Path("/proc/meminfo").is_file():
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20  # kB -> GiB
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions("onnxruntime-gpu", "onnxruntime", "torch", "transformers", "optimum", "optimum-onnx", "numpy", "onnx", "tokenizers"),
        "gpt2onnx_commit": commit,
        "loadavg": os.getloadavg(),
    }


def cpu_seconds() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, of which stolen by the hypervisor, of this process's finished children)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick, children.ru_utime + children.ru_stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bandwidth_probe(plan: Plan, threads: int) -> dict:
    """Memory read bandwidth with `threads` threads: best of N passes over a large array.

    numpy releases the GIL in its reductions, so each thread reads its own chunk.
    float32 sum is pairwise and compute-bound on one core; max of float32 and a
    sum of the same bytes as int64 are plain streaming reads: the best of those is
    the read bandwidth. A copy (read + write) is recorded beside it.
    """
    from concurrent.futures import ThreadPoolExecutor

    data = np.ones(plan.probe_bytes // 4, np.float32)  # [n]
    chunks = np.array_split(data, threads)  # threads x [~n / threads]
    as_int64 = [c[: len(c) // 2 * 2].view(np.int64) for c in chunks]  # the same bytes, [~n / threads / 2] each
    target = np.empty_like(data)  # [n]
    targets = np.array_split(target, threads)

    def best_gbs(work, nbytes):
        best = float("inf")
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(plan.probe_repeats):
                start = time.perf_counter()
                list(pool.map(work, range(threads)))
                best = min(best, time.perf_counter() - start)
        return nbytes / best / 1e9

    read = {
        "float32 max": best_gbs(lambda i: chunks[i].max(), data.nbytes),
        "int64 sum": best_gbs(lambda i: as_int64[i].sum(), data.nbytes),
        "float32 sum": best_gbs(lambda i: chunks[i].sum(), data.nbytes),
    }
    copy = best_gbs(lambda i: np.copyto(targets[i], chunks[i]), data.nbytes)
    return {"read_gbs": max(read.values()), "kernels_gbs": read, "copy_read_gbs": copy, "array_bytes": data.nbytes, "threads": threads, "passes": plan.probe_repeats}


def probe_with_contention(plan: Plan, threads: int) -> dict:
    """bandwidth_probe, plus the share of the machine's CPU that other processes used meanwhile."""
    busy0, own0 = cpu_seconds()[0], own_cpu_seconds()
    start = time.perf_counter()
    probe = bandwidth_probe(plan, threads)
    wall = time.perf_counter() - start
    others = (cpu_seconds()[0] - busy0) - (own_cpu_seconds() - own0)  # the machine's busy time less this process's
    probe["others_cpu_share"] = max(0.0, others) / (wall * (os.cpu_count() or 1))
    return probe
