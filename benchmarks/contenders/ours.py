"""gpt2onnx itself: its float32 and int8 exports, run the way users run them, through
`model.run(...)` and the Run's stream of deltas (the path behind `model.stream`,
`model.generate`, the CLI and the app: search, detokenizer, stop strings)."""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from pathlib import Path

import numpy as np

from ..plan import AGREEMENT_PROMPTS, FP32, INT4, INT4_KV8, INT8, INT8_KV8, Plan
from .base import Contender, Trace
from .onnx_weights import weight_bytes

REPO = Path(__file__).resolve().parents[2]


def sources_digest(*folders: Path) -> str:
    """sha256 of the Python sources in folders: a cached export is stale once the exporter changes."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class Gpt2onnxFp32(Contender):
    """`gpt2onnx export` of the checkpoint, run by gpt2onnx.runtime without torch."""

    name, label, ours = FP32, "gpt2onnx fp32", True

    @classmethod
    def export_options(cls) -> dict:
        """export_model's keyword arguments for this variant."""
        return {}

    @classmethod
    def cache_key(cls, checkpoint_key: dict) -> dict:
        # The runtime is hashed too: the export embeds the manifest and the contract it checks.
        return {**checkpoint_key, "exporter": sources_digest(REPO / "export", REPO / "runtime")}

    @classmethod
    def build(cls, checkpoint: Path, folder: Path) -> None:
        from gpt2onnx.export import export_model

        export_model(str(checkpoint), folder, **cls.export_options())

    @classmethod
    def weights(cls, folder: Path) -> dict:
        return weight_bytes(folder)

    def imports(self) -> None:
        importlib.import_module("gpt2onnx.runtime")  # onnxruntime, tokenizers

    def load(self) -> None:
        from gpt2onnx.runtime import load

        self.model = load(self.folder, provider="cpu", threads=self.threads)

    def generate(self, rows: list[list[int]], new_tokens: int, beams: int = 1) -> Trace:
        # The texts the ids spell, for the Completions only: every contender starts from ids
        # (random ids don't survive a decode/encode round trip), so tokenizing is no one's cost.
        texts = [self.model.tokenizer.decode(ids) for ids in rows]
        session = self.model.session
        arrived: list[list[tuple[float, float]]] = [[] for _ in rows]  # [rows][new]: (perf_counter, run_seconds) per token
        start = time.perf_counter()
        config = self.model.config(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=beams)
        run = self.model.run(texts, config, prompt_ids=rows)  # prefills here
        for delta in run.deltas():
            # A token is there when its text reaches the caller: one whose bytes end inside a
            # UTF-8 character arrives with the token that completes it (same stamp).
            now = (time.perf_counter(), session.run_seconds)
            arrived[delta.row].extend([now] * len(delta.token_ids))
        completions = run.completions()  # per prompt: the best beam first
        end = time.perf_counter()
        tokens = [completions[0].token_ids] if beams > 1 else [c.token_ids for c in completions]
        if beams > 1:
            # Beam search streams nothing: Run replays the results after the last step, so only
            # the whole call's time means something (the beam metric is tokens / whole call).
            return Trace(start, [end], end, tokens)
        for row, made in zip(arrived, tokens):
            assert len(row) == len(made), f"the deltas carried {len(row)} tokens of {len(made)}"
        # A step is done when its token reached the caller on every row: the latest of each column.
        steps = [max(column) for column in zip(*arrived)]  # [new] of (perf_counter, run_seconds)
        return Trace(start, [s for s, _ in steps], end, tokens, [inside for _, inside in steps])

    def extra(self, plan: Plan, figures: dict, side: Path | None) -> None:
        """gpt2onnx's own figures: a load without hashing, and the int8/fp32 agreement data."""
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


class _Quantized(Gpt2onnxFp32):
    """An export with quantized weights (`precision`: GraphPlan's weights), run the same way as float32."""

    precision = ""
    kv_cache_dtype = "auto"  # GraphPlan's: the KV cache's element type

    @classmethod
    def export_options(cls) -> dict:
        from gpt2onnx.export.optimize import GraphPlan

        return {"plan": GraphPlan(weights=cls.precision, kv_cache_dtype=cls.kv_cache_dtype)}

    @classmethod
    def cache_key(cls, checkpoint_key: dict) -> dict:
        return {**super().cache_key(checkpoint_key), cls.precision: True, "kv_cache_dtype": cls.kv_cache_dtype}


class Gpt2onnxInt8(_Quantized):
    """`gpt2onnx export --int8`: int8 weights (dynamic quantization)."""

    name, label, precision = INT8, "gpt2onnx int8", "int8"


class Gpt2onnxInt4(_Quantized):
    """`gpt2onnx export --int4`: 4-bit MatMulNBits weights."""

    name, label, precision = INT4, "gpt2onnx int4", "int4"


class Gpt2onnxInt8Kv8(Gpt2onnxInt8):
    """`gpt2onnx export --int8 --kv-cache-dtype int8`."""

    name, label, kv_cache_dtype = INT8_KV8, "gpt2onnx int8, int8 KV", "int8"


class Gpt2onnxInt4Kv8(Gpt2onnxInt4):
    """`gpt2onnx export --int4 --kv-cache-dtype int8`."""

    name, label, kv_cache_dtype = INT4_KV8, "gpt2onnx int4, int8 KV", "int8"
