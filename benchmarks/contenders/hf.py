"""The peers, both driven by transformers' generate(): PyTorch's GPT2LMHeadModel
(the checkpoint itself) and Optimum's ORTModelForCausalLM (Optimum's plain
export of it). A streamer's put() stamps each step's tokens."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from ..plan import OPTIMUM, TRANSFORMERS, Plan
from .base import Contender, Trace
from .onnx_weights import weight_bytes


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


class HFGenerate(Contender):
    """What both peers share: torch's threads, and the generate() call with a streamer."""

    def imports(self) -> None:
        import torch

        importlib.import_module("transformers")
        torch.set_num_threads(self.threads)

    def generate(self, rows: list[list[int]], new_tokens: int, beams: int = 1) -> Trace:
        import torch

        input_ids = torch.tensor(rows, dtype=torch.long)  # [batch, prompt]: equal lengths, no padding
        streamer = Streamer() if beams == 1 else None  # transformers refuses a streamer with beams
        pad = self.model.config.eos_token_id
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
                pad_token_id=pad,
                streamer=streamer,
            )  # [batch, prompt + new]: the best beam per prompt with beams
        end = time.perf_counter()
        stamps = streamer.stamps if streamer else [end]
        return Trace(start, stamps, end, out[:, input_ids.shape[1] :].tolist())

    def extra(self, plan: Plan, figures: dict, side: Path | None) -> None:
        pass


class Transformers(HFGenerate):
    """GPT2LMHeadModel.generate in PyTorch (use_cache, inference_mode)."""

    name, label, builds = TRANSFORMERS, "transformers PyTorch", False

    def load(self) -> None:
        from transformers import GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(self.folder).eval()


class Optimum(HFGenerate):
    """Optimum's plain export (main_export, task text-generation-with-past) run by ORTModelForCausalLM."""

    name, label = OPTIMUM, "Optimum ORTModelForCausalLM"

    @classmethod
    def build(cls, checkpoint: Path, folder: Path) -> None:
        from optimum.exporters.onnx import main_export

        main_export(str(checkpoint), output=folder, task="text-generation-with-past", device="cpu")

    @classmethod
    def weights(cls, folder: Path) -> dict:
        return weight_bytes(folder)

    def imports(self) -> None:
        super().imports()
        importlib.import_module("onnxruntime")
        importlib.import_module("optimum.onnxruntime")

    def load(self) -> None:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForCausalLM

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        self.model = ORTModelForCausalLM.from_pretrained(self.folder, provider="CPUExecutionProvider", session_options=options, use_cache=True)
