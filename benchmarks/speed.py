"""Speed benchmark (issue 6): gpt2onnx against Optimum and transformers, in one run, on this machine.

    .venv/bin/python benchmarks/speed.py [--repeats 3] [--threads T] [--out docs/speed] [--work DIR] [--quick]

All contenders run the same random weights in the real gpt2 (124M) shape
(make_random_gpt2(seed=0, **GPT2_SMALL)), greedy unless stated, on the CPU with
T threads (default: every core):

- gpt2onnx-fp32: `gpt2onnx export` of the checkpoint, run by gpt2onnx.runtime
  (load(folder, provider="cpu", threads=T)) through its step API;
- gpt2onnx-int8: `gpt2onnx export --int8` (export_model(..., plan=GraphPlan(weights="int8"))),
  run the same way;
- optimum: Optimum's plain export (main_export, task text-generation-with-past)
  run by ORTModelForCausalLM.generate, intra_op_num_threads=T;
- transformers: GPT2LMHeadModel.generate (PyTorch, use_cache, inference_mode,
  torch.set_num_threads(T)).

Each (contender, repeat) runs in its own process (this script with
--contender NAME, printing one JSON line), so imports never mix (the gpt2onnx
processes never import torch) and memory is per contender. Repeats are
interleaved, in a rotating order, so a noisy neighbour spreads over everyone.
Every process warms up with one short generation before it measures.

Metrics (see METRICS; every time is perf_counter wall time):
- decode tok/s: prompt 32, 128 new tokens, batch 1: (new tokens - 1) / (time
  of the last token - time of the first); end-to-end: 128 / whole call;
- time to first token (TTFT): call start to the first new token, for a 32- and
  a 512-token prompt (prefill plus choosing the token);
- per-token latency at context c: a prompt of c tokens, then the median time
  between consecutive new tokens over the next `latency_steps` steps (their
  forward passes attend over c+1 .. c+latency_steps positions);
- batch 8: 8 different 32-token prompts, 128 new tokens each; aggregate decode
  tok/s (8 x 127 tokens / decode time) and its ratio to the batch-1 figure;
- beam search: 4 beams, prompt 32, 64 new tokens: 64 / whole call;
- load time (imports apart), RSS after imports, after load, and peak (VmHWM);
- gpt2onnx only: Python overhead per token = (decode wall time - time inside
  onnxruntime's run) / steps, from model.session.run_seconds around the loop;
  decode speed at context 64 as a fraction of the memory-bandwidth bound
  (probe GB/s / weight bytes read per token).

"Time of a token": gpt2onnx's step API returns each token from
generate_next_token; the peers' generate() hands each step's tokens to a
streamer, whose put() records the time (their per-step figures include
generate()'s own per-step work, as ours include processors and the choice).
Generation is forced to full length (min_new_tokens = max_new_tokens) so that
an eos never shortens anyone's run.

Writes into --out: speed.md (ratios ours / peer with medians and min-max over
repeats, absolute figures, machine, targets), speed.json (every raw figure)
and decode_vs_context.png (needs matplotlib: pip install '.[bench]'; optional
with --quick). --quick: a tiny model, 1 repeat and few tokens, for the CI
smoke test (tests/test_bench.py); its default --out is a new temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

FP32, INT8, OPTIMUM, TRANSFORMERS = "gpt2onnx-fp32", "gpt2onnx-int8", "optimum", "transformers"
CONTENDERS = (FP32, INT8, OPTIMUM, TRANSFORMERS)
OURS = (FP32, INT8)
LABELS = {FP32: "gpt2onnx fp32", INT8: "gpt2onnx int8", OPTIMUM: "Optimum ORTModelForCausalLM", TRANSFORMERS: "transformers PyTorch"}
# (ours, peer) pairs of the ratio table.
PAIRS = ((FP32, TRANSFORMERS), (FP32, OPTIMUM), (INT8, TRANSFORMERS), (INT8, OPTIMUM), (INT8, FP32))

# A contender process during which other processes took more than this share of
# the CPU ran on a busy machine: the report says its figures are not reliable.
BUSY = 0.05

TINY = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 1024}
# Prompts whose greedy continuations and first-step log-probabilities int8 and fp32 are compared on.
AGREEMENT_PROMPTS = (
    "Once upon a time",
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, the first people to walk on the Moon",
    "def fibonacci(n):",
)


@dataclass(frozen=True)
class Plan:
    """What one benchmark run measures; FULL is the issue's settings, QUICK a smoke test's."""

    shape: dict  # make_random_gpt2 shape
    repeats: int = 3
    prompt_tokens: int = 32  # decode, batch and beam prompts
    new_tokens: int = 128  # decode and batch runs
    long_prompt: int = 512  # the second TTFT prompt (one of `contexts`)
    contexts: tuple[int, ...] = (64, 256, 512, 768, 1000)  # per-token latency; the plot's x axis
    latency_steps: int = 8  # timed steps per context
    batch: int = 8
    beams: int = 4
    beam_new_tokens: int = 64
    warmup_tokens: int = 8
    agreement_tokens: int = 32  # int8 vs fp32 greedy continuations
    probe_bytes: int = 2**30  # memory-bandwidth probe array
    probe_repeats: int = 7
    timeout_s: int = 900  # per contender process


FULL = Plan(shape=None)  # shape filled in by plan_for (GPT2_SMALL lives in the export package)
QUICK = Plan(
    shape=TINY,
    repeats=1,
    new_tokens=16,
    contexts=(64, 512, 1000),
    latency_steps=4,
    beam_new_tokens=8,
    warmup_tokens=2,
    agreement_tokens=8,
    probe_bytes=64 * 2**20,
    probe_repeats=3,
    timeout_s=300,
)


def plan_for(quick: bool) -> Plan:
    if quick:
        return QUICK
    from gpt2onnx.export.random_model import GPT2_SMALL  # argparse-light: no torch import

    return dataclasses.replace(FULL, shape=dict(GPT2_SMALL))


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    ours_only: bool = False  # gpt2onnx's figures only (absolute table, no ratios)


def metrics(plan: Plan) -> list[Metric]:
    """Every figure each contender reports, in table order."""
    p, n = plan.prompt_tokens, plan.new_tokens
    out = [
        Metric("decode_tok_s", f"decode, prompt {p}, {n} new, batch 1", "tok/s", True),
        Metric("e2e_tok_s", f"end-to-end, prompt {p}, {n} new, batch 1", "tok/s", True),
        Metric(f"ttft_{p}_ms", f"time to first token, prompt {p}", "ms", False),
        Metric(f"ttft_{plan.long_prompt}_ms", f"time to first token, prompt {plan.long_prompt}", "ms", False),
    ]
    out += [Metric(f"latency_ctx{c}_ms", f"per-token latency at context {c}", "ms", False) for c in plan.contexts]
    out += [
        Metric("batch_tok_s", f"batch {plan.batch} aggregate decode, prompt {p}, {n} new", "tok/s", True),
        Metric("batch_e2e_tok_s", f"batch {plan.batch} aggregate end-to-end", "tok/s", True),
        Metric("batch_speedup", f"batch {plan.batch} / batch 1 decode tok/s", "x", True),
        Metric("beam_tok_s", f"beam search, {plan.beams} beams, prompt {p}, {plan.beam_new_tokens} new", "tok/s", True),
        Metric("load_s", "load (session / model; imports apart)", "s", False),
        Metric("import_s", "imports of the runtime's packages", "s", False),
        Metric("rss_after_load_mb", "RSS after load", "MB", False),
        Metric("load_rss_mb", "RSS added by load", "MB", False),
        Metric("peak_rss_mb", "peak RSS (whole workload)", "MB", False),
    ]
    return out


# Figures only gpt2onnx has (absolute table only).
OURS_ONLY = (
    Metric("python_overhead_ms", "Python overhead per token (decode wall - onnxruntime run)", "ms", False, True),
    Metric("load_noverify_s", "load with verify=False (no sha256 of the files)", "s", False, True),
    Metric("bandwidth_fraction_ctx64", "decode at context 64 / memory-bandwidth bound", "x", True, True),
)


# ---------------------------------------------------------------------------
# Inside one contender's process
# ---------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size now, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process: VmHWM from /proc/self/status.

    Not getrusage's ru_maxrss: Linux carries it across exec from the forking
    parent, so a child of the (large) parent reports at least the parent's RSS.
    VmHWM belongs to the memory map that exec made fresh.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class Trace:
    """One generation call: when it started and ended, and when each step's tokens arrived."""

    start: float
    stamps: list[float]  # perf_counter after each step; stamps[0] is the first new token
    end: float
    tokens: list[list[int]]  # new ids per returned sequence
    inside: list[float] = field(default_factory=list)  # gpt2onnx: session.run_seconds at each stamp

    @property
    def ttft_s(self) -> float:
        return self.stamps[0] - self.start

    @property
    def decode_s(self) -> float:
        return self.stamps[-1] - self.stamps[0]

    def steps_ms(self) -> list[float]:
        return [1e3 * (b - a) for a, b in zip(self.stamps, self.stamps[1:])]


class Ours:
    """gpt2onnx.runtime through the step API (what generate() drives), no torch anywhere."""

    def __init__(self, folder: str, threads: int):
        self.folder, self.threads = folder, threads

    def imports(self) -> None:
        import gpt2onnx.runtime  # noqa: F401  (onnxruntime, tokenizers)

    def load(self) -> None:
        from gpt2onnx.runtime import load

        self.model = load(self.folder, provider="cpu", threads=self.threads)

    def generate(self, rows: list[list[int]], new_tokens: int, beams: int = 1) -> Trace:
        start = time.perf_counter()
        search = self.model.generator(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=beams)
        search.append_tokens(rows)
        session = self.model.session
        stamps, inside = [], []
        while not search.is_done():
            search.generate_next_token()
            stamps.append(time.perf_counter())
            inside.append(session.run_seconds)
        end = time.perf_counter()
        results = search.results()  # per prompt: the best beam first
        tokens = [results[0][0].token_ids] if beams > 1 else [sequences[0].token_ids for sequences in results]
        return Trace(start, stamps, end, tokens, inside)

    def extra(self, plan: Plan, figures: dict, side: Path | None) -> None:
        """gpt2onnx's own figures: Python overhead, a load without hashing, int8/fp32 agreement data."""
        if side is not None:
            side.mkdir(parents=True, exist_ok=True)
            vocab = self.model.info.vocab_size
            greedy, logprobs = [], []
            for prompt in AGREEMENT_PROMPTS:
                n = plan.agreement_tokens
                greedy.append(self.model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False).token_ids)
                # logprobs=vocab: the whole log-softmax of the logits after the prompt (raw, before processors).
                first = self.model.generate(prompt, max_new_tokens=1, do_sample=False, logprobs=vocab).sequences[0].logprobs[0]
                row = np.full(vocab, np.nan, np.float32)  # [vocab]
                ids, values = zip(*first.top)
                row[list(ids)] = values
                logprobs.append(row)
            np.save(side / "logprobs.npy", np.stack(logprobs))  # [prompts, vocab]
            (side / "greedy.json").write_text(json.dumps(greedy))
        del self.model
        start = time.perf_counter()
        from gpt2onnx.runtime import load

        load(self.folder, provider="cpu", threads=self.threads, verify=False)
        figures["load_noverify_s"] = time.perf_counter() - start


class Streamer:
    """A transformers streamer that only records when each step's tokens arrive."""

    def __init__(self):
        self.calls = 0
        self.stamps: list[float] = []

    def put(self, value) -> None:
        self.calls += 1
        if self.calls > 1:  # generate() puts the prompt first
            self.stamps.append(time.perf_counter())

    def end(self) -> None:
        pass


class HFGenerate:
    """A peer run through transformers' generate(): PyTorch's GPT2LMHeadModel or Optimum's ORTModelForCausalLM."""

    def __init__(self, name: str, folder: str, threads: int):
        self.name, self.folder, self.threads = name, folder, threads

    def imports(self) -> None:
        import torch
        import transformers  # noqa: F401

        torch.set_num_threads(self.threads)
        if self.name == OPTIMUM:
            import onnxruntime  # noqa: F401
            import optimum.onnxruntime  # noqa: F401

    def load(self) -> None:
        if self.name == OPTIMUM:
            import onnxruntime as ort
            from optimum.onnxruntime import ORTModelForCausalLM

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            self.model = ORTModelForCausalLM.from_pretrained(self.folder, provider="CPUExecutionProvider", session_options=options, use_cache=True)
        else:
            from transformers import GPT2LMHeadModel

            self.model = GPT2LMHeadModel.from_pretrained(self.folder).eval()
        self.eos = self.model.config.eos_token_id

    def generate(self, rows: list[list[int]], new_tokens: int, beams: int = 1) -> Trace:
        import torch

        input_ids = torch.tensor(rows, dtype=torch.long)  # [batch, prompt]: equal lengths, no padding
        streamer = Streamer() if beams == 1 else None  # transformers refuses a streamer with beams
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                num_beams=beams,
                use_cache=True,
                pad_token_id=self.eos,
                streamer=streamer,
            )
        end = time.perf_counter()
        stamps = streamer.stamps if streamer else [end]
        return Trace(start, stamps, end, out[:, input_ids.shape[1] :].tolist())

    def extra(self, plan: Plan, figures: dict, side: Path | None) -> None:
        pass


def prompt_rows(count: int, length: int, seed: int) -> list[list[int]]:
    """`count` prompts of `length` random GPT-2 token ids (never eos): the same in every process."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50256, (count, length)).tolist()


def measure(name: str, folder: str, threads: int, plan: Plan, side: Path | None) -> dict:
    """The whole workload of one contender in this process; returns its figures."""
    runner = Ours(folder, threads) if name in OURS else HFGenerate(name, folder, threads)
    figures: dict = {"contender": name, "pid": os.getpid(), "loadavg_start": os.getloadavg()[0]}
    start = time.perf_counter()
    runner.imports()
    figures["import_s"] = time.perf_counter() - start
    figures["rss_before_load_mb"] = rss_mb()
    start = time.perf_counter()
    runner.load()
    figures["load_s"] = time.perf_counter() - start
    figures["rss_after_load_mb"] = rss_mb()
    figures["load_rss_mb"] = figures["rss_after_load_mb"] - figures["rss_before_load_mb"]

    p = plan.prompt_tokens
    warm = runner.generate(prompt_rows(1, p, 1), plan.warmup_tokens)
    figures["warmup_s"] = warm.end - warm.start

    # Decode, batch 1.
    trace = runner.generate(prompt_rows(1, p, 2), plan.new_tokens)
    assert len(trace.tokens[0]) == plan.new_tokens, f"{name} made {len(trace.tokens[0])} tokens, not {plan.new_tokens}"
    steps = len(trace.stamps) - 1  # steps after the first token: each one runs the model once
    figures["decode_tok_s"] = steps / trace.decode_s
    figures["e2e_tok_s"] = plan.new_tokens / (trace.end - trace.start)
    figures[f"ttft_{p}_ms"] = 1e3 * trace.ttft_s
    figures["decode_steps_ms"] = trace.steps_ms()
    figures["decode_tokens"] = trace.tokens[0]
    if trace.inside:
        inside_s = trace.inside[-1] - trace.inside[0]
        figures["python_overhead_ms"] = 1e3 * (trace.decode_s - inside_s) / steps
        figures["onnxruntime_decode_s"] = inside_s

    # Per-token latency against context; TTFT of the long prompt.
    for c in plan.contexts:
        trace = runner.generate(prompt_rows(1, c, 100 + c), 1 + plan.latency_steps)
        figures[f"latency_ctx{c}_ms"] = statistics.median(trace.steps_ms())
        figures[f"latency_ctx{c}_steps_ms"] = trace.steps_ms()
        figures[f"ttft_ctx{c}_ms"] = 1e3 * trace.ttft_s
    figures[f"ttft_{plan.long_prompt}_ms"] = figures[f"ttft_ctx{plan.long_prompt}_ms"]

    # Batch.
    trace = runner.generate(prompt_rows(plan.batch, p, 3), plan.new_tokens)
    assert all(len(t) == plan.new_tokens for t in trace.tokens)
    figures["batch_tok_s"] = plan.batch * (len(trace.stamps) - 1) / trace.decode_s
    figures["batch_e2e_tok_s"] = plan.batch * plan.new_tokens / (trace.end - trace.start)
    figures["batch_speedup"] = figures["batch_tok_s"] / figures["decode_tok_s"]

    # Beam search.
    trace = runner.generate(prompt_rows(1, p, 4), plan.beam_new_tokens, beams=plan.beams)
    figures["beam_tok_s"] = len(trace.tokens[0]) / (trace.end - trace.start)
    figures["beam_tokens"] = trace.tokens[0]

    figures["peak_rss_mb"] = peak_rss_mb()  # before the extras below, which are not part of the workload
    figures["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # raw; inflated by the parent (see peak_rss_mb)
    runner.extra(plan, figures, side)
    figures["torch_imported"] = "torch" in sys.modules
    figures["loadavg_end"] = os.getloadavg()[0]
    return figures


# ---------------------------------------------------------------------------
# The parent: models, probe, processes, report
# ---------------------------------------------------------------------------


def sources_digest(*folders: Path) -> str:
    """sha256 of the Python sources in folders: a cached export is stale once the exporter changes."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class Cache:
    """Models built in --work, each reused while its key (what it was built from) is unchanged."""

    def __init__(self, root: Path):
        self.root = root
        self.index = root / "bench-cache.json"
        self.keys = json.loads(self.index.read_text()) if self.index.is_file() else {}

    def get(self, name: str, key: dict, build) -> tuple[Path, float | None]:
        """The folder `name`, built by build(folder) unless cached with the same key; (folder, build seconds or None)."""
        folder = self.root / name
        if self.keys.get(name) == key and folder.is_dir():
            print(f"  {name}: cached in {folder}", flush=True)
            return folder, None
        shutil.rmtree(folder, ignore_errors=True)
        print(f"  {name}: building in {folder} ...", flush=True)
        start = time.perf_counter()
        build(folder)
        seconds = time.perf_counter() - start
        self.keys[name] = key
        self.index.write_text(json.dumps(self.keys, indent=1))
        return folder, seconds


def versions(*names: str) -> dict:
    from gpt2onnx.export.manifest import package_versions

    return package_versions(names)


def build_models(work: Path, plan: Plan) -> tuple[dict[str, Path], dict, dict]:
    """Checkpoint and the three exports; returns (folders by contender, build seconds, skipped contenders -> why)."""
    cache = Cache(work)
    pkg = versions("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime-gpu", "onnxruntime", "accelerate")
    ckpt_key = {"shape": plan.shape, "seed": 0, **pkg}

    def make_checkpoint(folder):
        from gpt2onnx.export.random_model import make_random_gpt2

        make_random_gpt2(folder, seed=0, **plan.shape)

    seconds, skipped = {}, {}
    checkpoint, seconds["checkpoint"] = cache.get("checkpoint", ckpt_key, make_checkpoint)
    export_key = {**ckpt_key, "exporter": sources_digest(REPO / "export", REPO / "runtime")}

    def gpt2onnx_export(extra: dict):
        def build(folder):
            from gpt2onnx.export import export_model

            export_model(str(checkpoint), folder, **extra)

        return build

    def optimum_export(folder):
        from optimum.exporters.onnx import main_export

        main_export(str(checkpoint), output=folder, task="text-generation-with-past", device="cpu")

    folders = {TRANSFORMERS: checkpoint}
    folders[FP32], seconds[FP32] = cache.get(FP32, export_key, gpt2onnx_export({}))
    from gpt2onnx.export.optimize import GraphPlan

    folders[INT8], seconds[INT8] = cache.get(INT8, {**export_key, "int8": True}, gpt2onnx_export({"plan": GraphPlan(weights="int8")}))
    folders[OPTIMUM], seconds[OPTIMUM] = cache.get(OPTIMUM, ckpt_key, optimum_export)
    return folders, seconds, skipped


def weight_bytes(folder: Path) -> dict:
    """Bytes of the graph's weights (model.onnx, external data included), stored and read per token.

    Read per token: every initializer (and Constant) in full, except those only
    ever read through Gather's data input (embedding lookups: wpe, an untied
    wte), which read one row. The tied wte that the lm_head MatMul reads counts
    in full. The KV cache is not counted (at context 64 it is ~1% of fp32 GPT-2).
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    graph = model.graph
    consumers = defaultdict(list)  # tensor name -> [(op_type, input index)]
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers[name].append((node.op_type, i))
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(node.output[0], a.t) for node in graph.node if node.op_type == "Constant" for a in node.attribute if a.name == "value"]
    stored = read = 0
    for name, tensor in tensors:
        dims = list(tensor.dims)
        size = int(np.prod(dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        stored += size
        uses = consumers.get(name, [])
        gather_only = bool(uses) and all(op == "Gather" and i == 0 for op, i in uses) and len(dims) >= 1 and dims[0] > 0
        read += size // dims[0] if gather_only else size
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name.startswith("model.onnx")}
    return {"stored_bytes": stored, "read_bytes_per_token": read, "model_files_bytes": files}


def bandwidth_probe(plan: Plan, threads: int) -> dict:
    """Memory read bandwidth with `threads` threads: best of N passes over a large array.

    numpy releases the GIL in its reductions, so each thread reads its own chunk.
    float32 sum is pairwise and compute-bound on one core; max of float32 and a
    sum of the same bytes as int64 are plain streaming reads: the best of those is
    the read bandwidth. A copy (read + write) is recorded beside it.
    """
    from concurrent.futures import ThreadPoolExecutor

    data = np.ones(plan.probe_bytes // 4, np.float32)  # [n]
    chunks = np.array_split(data, threads)
    as_int64 = [c[: len(c) // 2 * 2].view(np.int64) for c in chunks]
    target = np.empty_like(data)
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


def machine(threads: int) -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
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


def run_contender(name: str, folder: Path, args, side: Path | None, plan: Plan) -> dict:
    """One process of this script in --contender mode; its JSON line, or {"error": ...}.

    Also measures how busy the machine was meanwhile: CPU time that other
    processes (and the hypervisor's steal) took, as a share of all cores.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--contender", name, "--model", str(folder), "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    if side is not None:
        cmd += ["--side", str(side)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    busy0, steal0, child0 = cpu_seconds()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=plan.timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {plan.timeout_s} s"}
    wall = time.perf_counter() - start
    busy1, steal1, child1 = cpu_seconds()
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        print(f"    {name} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else ''}"}
    run = json.loads(lines[-1])
    capacity = wall * (os.cpu_count() or 1)
    run["process_wall_s"] = wall
    run["process_cpu_s"] = child1 - child0
    # The parent only waits meanwhile: busy time beyond the child's own is someone else's.
    run["others_cpu_share"] = max(0.0, (busy1 - busy0) - (child1 - child0)) / capacity
    run["steal_share"] = (steal1 - steal0) / capacity
    return run


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)} if values else {}


def summarise(runs: dict[str, list[dict]], plan: Plan, probe: dict, weights: dict) -> tuple[dict, dict]:
    """(per contender: metric -> spread; per pair: metric -> spread of the per-repeat ratios)."""
    keys = [m.key for m in metrics(plan)] + [m.key for m in OURS_ONLY]
    for name, repeats in runs.items():
        for run in repeats:
            if "error" in run:
                continue
            # Decode tok/s against context (the plot), and the bandwidth fraction at context 64.
            for c in plan.contexts:
                run[f"decode_tok_s_ctx{c}"] = 1e3 / run[f"latency_ctx{c}_ms"]
            if name in weights:
                bound = probe["read_gbs"] * 1e9 / weights[name]["read_bytes_per_token"]
                run["bandwidth_bound_tok_s"] = bound
                run["bandwidth_fraction_ctx64"] = run["decode_tok_s_ctx64"] / bound if "decode_tok_s_ctx64" in run else None
            run["latency_ratio_last_first"] = run[f"latency_ctx{plan.contexts[-1]}_ms"] / run[f"latency_ctx{plan.contexts[0]}_ms"]
    keys += [f"decode_tok_s_ctx{c}" for c in plan.contexts] + ["bandwidth_bound_tok_s", "latency_ratio_last_first"]
    summary = {}
    for name, repeats in runs.items():
        good = [r for r in repeats if "error" not in r]
        summary[name] = {k: spread([r[k] for r in good if r.get(k) is not None]) for k in keys}
        summary[name] = {k: v for k, v in summary[name].items() if v}
    ratios = {}
    for ours, peer in PAIRS:
        if ours not in runs or peer not in runs:
            continue
        pair = {}
        for m in metrics(plan):
            values = [a[m.key] / b[m.key] for a, b in zip(runs[ours], runs[peer]) if "error" not in a and "error" not in b and b.get(m.key)]
            if values:
                pair[m.key] = spread(values)
        ratios[f"{ours}/{peer}"] = pair
    return summary, ratios


@dataclass(frozen=True)
class Target:
    text: str
    value: float | None  # the measured median (None: not measured)
    bound: float
    at_least: bool  # value >= bound passes (else value <= bound)
    unit: str = "x"

    @property
    def status(self) -> str:
        if self.value is None:
            return "SKIP"
        return "PASS" if (self.value >= self.bound if self.at_least else self.value <= self.bound) else "FAIL"

    def line(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.3g}{self.unit}"
        return f"{self.status}  {self.text}: {shown} (target {'>=' if self.at_least else '<='} {self.bound:g}{self.unit})"


def targets(summary: dict, ratios: dict, plan: Plan) -> list[Target]:
    def med(name, key):
        return summary.get(name, {}).get(key, {}).get("median")

    def ratio(pair, key):
        return ratios.get(pair, {}).get(key, {}).get("median")

    last, first = plan.contexts[-1], plan.contexts[0]
    out = [
        Target("fp32 decode / transformers", ratio(f"{FP32}/{TRANSFORMERS}", "decode_tok_s"), 2.0, True),
        Target("fp32 decode / Optimum", ratio(f"{FP32}/{OPTIMUM}", "decode_tok_s"), 1.6, True),
        Target("int8 decode / transformers (fp32)", ratio(f"{INT8}/{TRANSFORMERS}", "decode_tok_s"), 5.0, True),
        Target(f"fp32 per-token latency ctx {last} / ctx {first}", med(FP32, "latency_ratio_last_first"), 1.25, False),
        Target(f"int8 per-token latency ctx {last} / ctx {first}", med(INT8, "latency_ratio_last_first"), 1.5, False),
    ]
    for name in OURS:
        label = name.split("-")[1]
        out.append(Target(f"{label} decode at ctx 64 / memory-bandwidth bound", med(name, "bandwidth_fraction_ctx64"), 0.8, True))
    for name in OURS:
        label = name.split("-")[1]
        out.append(Target(f"{label} Python overhead per token", med(name, "python_overhead_ms"), 0.3, False, " ms"))
    for name in OURS:
        label = name.split("-")[1]
        out.append(Target(f"{label} batch {plan.batch} aggregate / batch 1 decode", med(name, "batch_speedup"), 4.0, True))
    return out


def agreement(side: Path) -> dict | None:
    """int8 against fp32: greedy ids on the test prompts, and the first step's log-probabilities."""
    a, b = side / FP32, side / INT8
    if not (a / "greedy.json").is_file() or not (b / "greedy.json").is_file():
        return None
    fp32, int8 = json.loads((a / "greedy.json").read_text()), json.loads((b / "greedy.json").read_text())
    prompts = []
    for prompt, x, y in zip(AGREEMENT_PROMPTS, fp32, int8):
        diverge = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), None)
        prompts.append({"prompt": prompt, "equal": x == y, "first_divergence": diverge, "tokens": len(x)})
    lp32, lp8 = np.load(a / "logprobs.npy"), np.load(b / "logprobs.npy")  # [prompts, vocab]
    diff = lp8 - lp32  # [prompts, vocab]
    return {
        "prompts": prompts,
        "max_abs_logprob_diff": float(np.abs(diff).max()),
        # Log-probabilities are the logits less a per-row constant; the logits' drift up to that constant:
        "max_logit_drift_up_to_constant": float(((diff.max(axis=1) - diff.min(axis=1)) / 2).max()),
        "top1_equal": [bool(x) for x in lp32.argmax(axis=1) == lp8.argmax(axis=1)],
    }


def same_work(runs: dict[str, list[dict]]) -> dict:
    """Whether the fp32 contenders made the same tokens as transformers (greedy batch 1, and the best beam):
    the same weights and the same search should, so the timings compare the same work. (int8
    is compared with fp32 in agreement().)"""
    reference = next((r for r in runs.get(TRANSFORMERS, []) if "error" not in r), None)
    out = {}
    for name, repeats in runs.items():
        good = [r for r in repeats if "error" not in r]
        if reference is None or name in (TRANSFORMERS, INT8) or not good:
            continue
        out[name] = {k: all(r[k] == reference[k] for r in good) for k in ("decode_tokens", "beam_tokens")}
    return out


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"


def cell(s: dict | None) -> str:
    if not s:
        return "n/a"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def markdown(report: dict, plan: Plan) -> str:
    m = report["machine"]
    summary, ratios = report["summary"], report["ratios"]
    present = [c for c in CONTENDERS if c in summary]
    lines = [
        "# gpt2onnx speed benchmark",
        "",
        f"`{report['command']}`, {report['date']}. Written by `benchmarks/speed.py`; raw figures in `speed.json`.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gib']} GiB; {m['platform']}, Python {m['python']}",
        f"- threads: {m['threads']} (onnxruntime intra_op_num_threads, torch.set_num_threads); load average {m['loadavg'][0]:.2f} at the start",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; gpt2onnx {m['gpt2onnx_commit']}",
        f"- model: random weights, shape {plan.shape}, seed 0; {report['repeats']} repeat(s), each contender in its own process per repeat",
        f"- memory read bandwidth ({m['threads']} threads, best of {report['bandwidth']['passes']}): {report['bandwidth']['read_gbs']:.1f} GB/s",
    ]
    for name, why in report["skipped"].items():
        lines.append(f"- **{name} skipped**: {why}")
    busy = report["contention"]
    if busy:
        lines.append(f"- other processes used {100 * report['bandwidth']['others_cpu_share']:.0f}% of the CPU during the bandwidth probe")
        lines.append(
            f"- other processes used {100 * busy['median']:.0f}% ({100 * busy['min']:.0f}–{100 * busy['max']:.0f}%) of the machine's CPU "
            f"during the contender processes (hypervisor steal included)" + (": **the machine was busy; these figures are not reliable**" if busy["max"] > BUSY else "")
        )
    same = report["same_tokens_as_transformers"]
    if same:
        lines.append("- same tokens as transformers (greedy, best beam): " + ", ".join(
            f"{name} {'yes' if all(v.values()) else 'NO: ' + ', '.join(k for k, ok in v.items() if not ok)}" for name, v in same.items()))
    lines += ["", "Cells: median over repeats (min–max).", "", "## Ratios: ours ÷ peer", ""]
    pairs = [p for p in ratios if ratios[p]]
    head = "| metric | better | " + " | ".join(p.replace("gpt2onnx-", "").replace("/", " ÷ ") for p in pairs) + " |"
    lines += [head, "|" + " --- |" * (2 + len(pairs))]
    for metric in metrics(plan):
        lines.append(f"| {metric.label} | {'higher' if metric.higher_is_better else 'lower'} | " + " | ".join(cell(ratios[p].get(metric.key)) for p in pairs) + " |")
    lines += ["", "## Absolute figures", "", "| metric | unit | " + " | ".join(LABELS[c] for c in present) + " |", "|" + " --- |" * (2 + len(present))]
    for metric in metrics(plan) + list(OURS_ONLY):
        lines.append(f"| {metric.label} | {metric.unit} | " + " | ".join(cell(summary[c].get(metric.key)) for c in present) + " |")
    lines.append("| decode tok/s against context | tok/s | " + " | ".join(
        "<br>".join(f"{c}: {fmt(summary[n].get(f'decode_tok_s_ctx{c}', {}).get('median'))}" for c in plan.contexts) for n in present) + " |")
    lines += ["", "## Targets", "", "```"] + [t.line() for t in report["targets_objects"]] + ["```", ""]
    lines += ["## Memory-bandwidth bound", ""]
    for name, w in report["weights"].items():
        bound = summary.get(name, {}).get("bandwidth_bound_tok_s", {}).get("median")
        lines.append(
            f"- {LABELS[name]}: {w['read_bytes_per_token'] / 1e6:.1f} MB of weights read per token ({w['stored_bytes'] / 1e6:.1f} MB stored) "
            f"-> bound {fmt(bound)} tok/s at {report['bandwidth']['read_gbs']:.1f} GB/s"
        )
    agree = report.get("int8_agreement")
    lines += ["", "## int8 against fp32", ""]
    if agree:
        for p in agree["prompts"]:
            state = "equal" if p["equal"] else f"diverge at token {p['first_divergence']}"
            lines.append(f"- `{p['prompt']}`: greedy {p['tokens']} tokens {state}")
        lines.append(f"- max |log-prob difference| over the vocabulary after each prompt: {agree['max_abs_logprob_diff']:.3g} "
                     f"(logit drift up to the softmax constant: {agree['max_logit_drift_up_to_constant']:.3g}); top-1 equal: {agree['top1_equal']}")
        lines.append("- random weights give nearly flat next-token distributions, so small drifts flip greedy choices sooner than a trained model's would")
    else:
        lines.append("- not measured (no int8 contender)")
    lines += ["", "## Method", "", METHOD.format(plan=plan), ""]
    return "\n".join(lines)


METHOD = """\
- Each (contender, repeat) is a fresh process: imports, load, a warm-up generation
  ({plan.warmup_tokens} tokens), then the workloads in this order. Repeats interleave the
  contenders in a rotating order. Ratios are taken per repeat (repeat i of ours ÷ repeat
  i of the peer), then summarised.
- Token times: gpt2onnx's step API returns each token from `generate_next_token`
  (prefill in `append_tokens`); the peers' `generate()` passes each step's tokens
  to a streamer whose `put()` records the time. Greedy, forced to full length
  (`min_new_tokens = max_new_tokens`), prompts of random token ids.
- decode tok/s = (new tokens − 1) / (last token time − first token time); end-to-end =
  new tokens / whole call. TTFT = call start → first new token.
- per-token latency at context c: prompt of c tokens, then the median of the
  {plan.latency_steps} step-to-step times after the first token (forward passes over
  c+1 … c+{plan.latency_steps} positions); the plot shows 1000 / that latency.
- batch: {plan.batch} different prompts of {plan.prompt_tokens} tokens; aggregate tok/s counts every row's tokens.
- beam search: `num_beams={plan.beams}`, tokens of the best sequence / whole call.
- load: `load(folder, provider="cpu", threads=T)` (sha256 of every file included;
  the verify=False figure beside it), `ORTModelForCausalLM.from_pretrained`,
  `GPT2LMHeadModel.from_pretrained`. RSS from /proc/self/statm; peak = VmHWM at the end of
  the workloads (ru_maxrss would carry the parent's peak across exec).
- Python overhead (gpt2onnx): (decode wall time − Δ`model.session.run_seconds`) / steps.
- bandwidth bound = probe read GB/s ÷ weight bytes read per token (initializers of
  model.onnx, embedding rows only for Gather-only tables; the lm_head reads all of wte)."""


def plot(report: dict, plan: Plan, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name in CONTENDERS:
        s = report["summary"].get(name)
        if not s or f"decode_tok_s_ctx{plan.contexts[0]}" not in s:
            continue
        ys = [s[f"decode_tok_s_ctx{c}"] for c in plan.contexts]
        med = np.array([y["median"] for y in ys])
        err = np.array([[y["median"] - y["min"] for y in ys], [y["max"] - y["median"] for y in ys]])
        ax.errorbar(plan.contexts, med, yerr=err, marker="o", capsize=3, label=LABELS[name])
    m = report["machine"]
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("decode tokens/s (batch 1, greedy)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"GPT-2 124M shape, {m['cpu']}, {m['threads']} threads", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parent(args, plan: Plan) -> int:
    if not args.quick:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("speed.py: the plot needs matplotlib: pip install '.[bench]' (or run with --quick)", file=sys.stderr)
            return 2
    plan = dataclasses.replace(plan, repeats=args.repeats or plan.repeats)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="gpt2onnx-speed-quick-")) if args.quick else REPO / "docs" / "speed")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpt2onnx-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = [c for c in CONTENDERS if c in args.contenders.split(",")] if args.contenders else list(CONTENDERS)
    started = time.perf_counter()
    try:
        print(f"models in {work}:", flush=True)
        folders, build_s, skipped = build_models(work, plan)
        for name, why in skipped.items():
            print(f"note: {name} skipped: {why}", flush=True)
        contenders = [c for c in wanted if c in folders]
        weights = {c: weight_bytes(folders[c]) for c in (FP32, INT8, OPTIMUM) if c in folders}
        print("memory-bandwidth probe ...", flush=True)
        busy0, own0 = cpu_seconds()[0], own_cpu_seconds()
        probe_start = time.perf_counter()
        probe = bandwidth_probe(plan, args.threads)
        probe_wall = time.perf_counter() - probe_start
        others = (cpu_seconds()[0] - busy0) - (own_cpu_seconds() - own0)  # the machine's busy time less this process's
        probe["others_cpu_share"] = max(0.0, others) / (probe_wall * (os.cpu_count() or 1))
        print(f"  {probe['read_gbs']:.1f} GB/s read with {args.threads} threads", flush=True)
        side_root = work / "side"
        shutil.rmtree(side_root, ignore_errors=True)
        runs: dict[str, list[dict]] = {c: [] for c in contenders}
        for r in range(plan.repeats):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for name in order:
                side = side_root / name if (r == 0 and name in OURS) else None
                t0 = time.perf_counter()
                run = run_contender(name, folders[name], args, side, plan)
                run["repeat"] = r
                runs[name].append(run)
                shown = "error" if "error" in run else f"decode {run['decode_tok_s']:.1f} tok/s"
                print(f"  repeat {r + 1}/{plan.repeats} {name}: {shown} ({time.perf_counter() - t0:.0f} s)", flush=True)
        summary, ratios = summarise(runs, plan, probe, weights)
        checks = targets(summary, ratios, plan)
        report = {
            "command": " ".join(["benchmarks/speed.py"] + sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(args.threads),
            "plan": dataclasses.asdict(plan),
            "repeats": plan.repeats,
            "contenders": contenders,
            "skipped": skipped,
            "build_seconds": build_s,
            "bandwidth": probe,
            "weights": weights,
            "metrics": [dataclasses.asdict(m) for m in metrics(plan) + list(OURS_ONLY)],
            "runs": runs,
            "summary": summary,
            "ratios": ratios,
            "targets": [dict(dataclasses.asdict(t), status=t.status) for t in checks],
            "int8_agreement": agreement(side_root),
            "same_tokens_as_transformers": same_work(runs),
            "contention": spread([run["others_cpu_share"] for repeats in runs.values() for run in repeats if "others_cpu_share" in run]),
            "seconds": None,
        }
        report["seconds"] = round(time.perf_counter() - started, 1)
        (out / "speed.json").write_text(json.dumps(report, indent=1))
        (out / "speed.md").write_text(markdown(dict(report, targets_objects=checks), plan))
        try:
            plot(report, plan, out / "decode_vs_context.png")
        except ImportError:
            print("note: no plot (matplotlib not installed: pip install '.[bench]')")
        print()
        for name in contenders:
            s = summary[name]
            print(f"{LABELS[name]:30s} decode {cell(s.get('decode_tok_s'))} tok/s, TTFT {plan.prompt_tokens} {cell(s.get(f'ttft_{plan.prompt_tokens}_ms'))} ms, "
                  f"batch {plan.batch} {cell(s.get('batch_tok_s'))} tok/s, beams {cell(s.get('beam_tok_s'))} tok/s, peak RSS {cell(s.get('peak_rss_mb'))} MB")
        print("same tokens as transformers: " + ", ".join(f"{n} {v}" for n, v in report["same_tokens_as_transformers"].items()))
        if report["int8_agreement"]:
            agree = report["int8_agreement"]
            print(f"int8 vs fp32: greedy equal {[p['equal'] for p in agree['prompts']]}, first divergence {[p['first_divergence'] for p in agree['prompts']]}, "
                  f"max |log-prob diff| {agree['max_abs_logprob_diff']:.3g}")
        print()
        for check in checks:
            print(check.line())
        if report["contention"] and report["contention"]["max"] > BUSY:
            print(f"\nwarning: other processes took up to {100 * report['contention']['max']:.0f}% of the CPU during the runs: these figures are not reliable")
        print(f"\nwrote {out / 'speed.md'}, {out / 'speed.json'}" + (f", {out / 'decode_vs_context.png'}" if (out / "decode_vs_context.png").exists() else "") + f" in {report['seconds']:.0f} s")
        return 1 if any("error" in run for repeats in runs.values() for run in repeats) else 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="process runs per contender (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads for every contender (default: all cores)")
    parser.add_argument("--out", default=None, help="where speed.md/.json/.png go (default docs/speed; a new temporary folder with --quick)")
    parser.add_argument("--work", default=None, help="keep the checkpoint and exports here and reuse them next time (default: a temporary folder, removed)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 1 repeat, few tokens: a smoke test")
    parser.add_argument("--contenders", default=None, help=f"comma-separated subset of {','.join(CONTENDERS)}")
    parser.add_argument("--contender", default=None, help=argparse.SUPPRESS)  # internal: measure one contender, print JSON
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.contender:
        plan = QUICK if args.quick else dataclasses.replace(FULL, shape={})  # the shape matters to the parent only
        figures = measure(args.contender, args.model, args.threads, plan, Path(args.side) if args.side else None)
        print(json.dumps(figures))
        return 0
    return parent(args, plan_for(args.quick))


if __name__ == "__main__":
    sys.exit(main())
