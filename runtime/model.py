"""A loaded export folder and the calls most programs want: generate and stream.

`load(folder)` checks the manifest and the graph, opens the session on the
requested provider and reads the model's generation defaults. `load()` with no
folder takes the model that ships inside gpt2onnx (DEFAULT_MODEL). `stream()` yields
text deltas as tokens are made; `generate()` runs the same Run to the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import overload

import numpy as np

from . import contract, scoring
from .config import GenerationConfig
from .beam_search import BeamSearch
from .errors import ModelLoadError, UsageError
from .generator import Generator
from .manifest import model_info, read_manifest, verify_files
from .run import Completion, Run, make_search
from .scoring import Score
from .session import DecoderSession
from .tokenizer import Tokenizer

# A small GPT-2 that gpt2onnx trained on Debian's fortune cookies and exported
# itself (its training.json says how): what runs when no model is named, offline.
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"


class CompletionStream:
    """Iterates the text deltas of one prompt's completion; `.completion` holds the result.

    Generation happens as you iterate: stop iterating and call close() to cancel
    after the current token.
    """

    def __init__(self, run: Run):
        self._run = run
        self._deltas = run.deltas()
        self.completion: Completion | None = None

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        for _, delta in self._deltas:
            return delta
        self.completion = self._run.completions()[0]
        raise StopIteration

    def close(self) -> None:
        """Cancel: stop after the current token; `.completion` keeps what was made."""
        if self.completion is None:
            self._run.cancel()
            for _ in self:
                pass


class Model:
    """An export folder loaded for generation."""

    def __init__(self, folder: str | Path | None = None, provider: str = "auto", verify: bool = True, threads: int | None = None):
        self.folder = DEFAULT_MODEL if folder is None else Path(folder).expanduser()
        if not self.folder.exists():
            raise ModelLoadError(f"no such model folder: {self.folder}")
        if not self.folder.is_dir():
            raise ModelLoadError(f"{self.folder} is a file: pass the export folder that holds it")
        self.manifest = read_manifest(self.folder)
        self.info = model_info(self.manifest, self.folder)
        verify_files(self.folder, self.manifest, check_hashes=verify)
        self.tokenizer = Tokenizer(self.folder / contract.TOKENIZER_FILE)
        if self.tokenizer.vocab_size > self.info.vocab_size:
            raise ModelLoadError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model only {self.info.vocab_size}: "
                "the tokenizer belongs to another model; re-export with the checkpoint's own tokenizer"
            )
        self.generation_config = self._read_generation_config()
        self.session = DecoderSession(self.folder / contract.MODEL_FILE, self.info, provider, threads)

    @property
    def provider(self) -> str:
        """The provider actually running: "cuda" or "cpu"."""
        return self.session.provider

    @property
    def provider_note(self) -> str | None:
        """Why provider="auto" is on the CPU, or None."""
        return self.session.provider_note

    def _read_generation_config(self) -> GenerationConfig:
        defaults = {"eos_token_id": self.info.eos_token_id, "bos_token_id": self.info.bos_token_id}
        path = self.folder / contract.GENERATION_CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            return GenerationConfig.from_dict(defaults | data)
        except (ValueError, TypeError) as e:
            raise ModelLoadError(f"{path} has settings gpt2onnx can't use ({e}): fix or delete it") from None

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids for a prompt; an empty prompt starts from the bos token, as transformers does."""
        ids = self.tokenizer.encode(prompt)
        if not ids:
            bos = self.generation_config.bos_token_id
            if bos is None:
                raise UsageError("the prompt is empty and the model has no bos token to start from: give a prompt")
            ids = [bos]
        return ids

    def config(self, config: GenerationConfig | None = None, **kwargs) -> GenerationConfig:
        """The model's defaults (or `config`) with `kwargs` applied, as `model.generate(**kwargs)` does."""
        return (config or self.generation_config).update(**kwargs)

    def generator(self, config: GenerationConfig | None = None, *, seed: int | None = None, **kwargs) -> Generator | BeamSearch:
        """A step-API search on this model's session: BeamSearch when num_beams > 1, else Generator."""
        return make_search(self.session, self.config(config, **kwargs), np.random.default_rng(seed))

    def stream(self, prompt: str, config: GenerationConfig | None = None, *, seed: int | None = None, **kwargs) -> CompletionStream:
        """Text deltas of the completion of `prompt`, yielded as they are made (greedy or sampling)."""
        config = self.config(config, **kwargs)
        if config.num_beams > 1 or config.num_return_sequences > 1:
            raise UsageError("stream() gives one sequence: use generate() for beam search or num_return_sequences > 1")
        return CompletionStream(Run(self, [prompt], config, np.random.default_rng(seed)))

    @overload
    def generate(self, prompt: str, config: GenerationConfig | None = None, *, seed: int | None = None, **kwargs) -> Completion: ...
    @overload
    def generate(self, prompt: list[str], config: GenerationConfig | None = None, *, seed: int | None = None, **kwargs) -> list[Completion]: ...

    def generate(self, prompt, config=None, *, seed=None, **kwargs):
        """Complete a prompt (-> Completion) or a batch of prompts (-> list of Completion, left-padded
        into one batch). `seed` makes sampling reproducible."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise UsageError("no prompts given")
        run = Run(self, prompts, self.config(config, **kwargs), np.random.default_rng(seed))
        for _ in run.deltas():
            pass
        completions = run.completions()
        return completions[0] if isinstance(prompt, str) else completions

    def score(self, texts: list[str], stride: int | None = None) -> list[Score]:
        """Teacher-forced log-probability and perplexity of each text (batched; a sliding
        window of n_positions tokens every `stride` for texts longer than the context)."""
        return scoring.score(self, texts, stride)


def load(folder: str | Path | None = None, provider: str = "auto", verify: bool = True, threads: int | None = None) -> Model:
    """Load an export folder (None: the shipped default model, DEFAULT_MODEL).

    provider: "auto" (CUDA if it works, else CPU with a warning), "cpu" or "cuda".

    verify=False skips the sha256 check of every file (sizes are still checked).
    """
    return Model(folder, provider=provider, verify=verify, threads=threads)
