"""A loaded export folder and the calls most programs want: generate and stream.

`load(folder)` checks the manifest and the graph, opens the session on the
requested provider and reads the model's generation defaults. `stream()` yields
text deltas as tokens are made; `generate()` runs the same stream to the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import contract
from .config import GenerationConfig
from .detokenizer import StreamDecoder
from .errors import ModelLoadError, UsageError
from .generator import Generator, Timing
from .manifest import model_info, read_manifest, verify_files
from .session import DecoderSession
from .tokenizer import Tokenizer


@dataclass
class Completion:
    """One prompt's result."""

    prompt: str
    prompt_token_ids: list[int]  # what the model saw: the bos token for an empty prompt
    token_ids: list[int] = field(default_factory=list)  # generated ids only, eos included if reached
    text: str = ""  # the text of token_ids (special tokens skipped)
    finish_reason: str | None = None  # "eos", "length" (max_new_tokens) or "context" (n_positions reached)
    timing: Timing = field(default_factory=Timing)


class CompletionStream:
    """Iterates the text deltas of one completion; `.completion` holds the result.

    Generation happens as you iterate: stop iterating (or call close()) to cancel
    after the current token.
    """

    def __init__(self, model: Model, prompt: str, config: GenerationConfig):
        ids = model.encode_prompt(prompt)
        self.completion = Completion(prompt=prompt, prompt_token_ids=ids)
        self._generator = Generator(model.session, config)
        self._decoder = StreamDecoder(model.tokenizer)
        self._generator.append_tokens(ids)
        self.completion.timing = self._generator.timing
        self._closed = False

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        while not self._closed:
            if self._generator.is_done():
                self._finish()
                delta = self._decoder.flush()
                if delta:
                    self.completion.text += delta
                    return delta
                break
            token = int(self._generator.generate_next_token()[0])
            delta = self._decoder.push(token)  # special tokens such as eos decode to ""
            if delta:
                self.completion.text += delta
                return delta
        raise StopIteration

    def _finish(self) -> None:
        self._closed = True
        self.completion.token_ids = self._generator.generated_ids(0)
        self.completion.finish_reason = self._generator.finish_reasons[0]

    def close(self) -> None:
        """Stop generating; `.completion` keeps what was made so far."""
        if not self._closed:
            self.completion.text += self._decoder.flush()
            self._finish()
            self.completion.finish_reason = self.completion.finish_reason or "cancelled"


class Model:
    """An export folder loaded for generation."""

    def __init__(self, folder: str | Path, provider: str = "auto", verify: bool = True, threads: int | None = None):
        self.folder = Path(folder).expanduser()
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

    def generator(self, config: GenerationConfig | None = None, **kwargs) -> Generator:
        """A step-API Generator on this model's session."""
        return Generator(self.session, self.config(config, **kwargs))

    def stream(self, prompt: str, config: GenerationConfig | None = None, **kwargs) -> CompletionStream:
        """Text deltas of the completion of `prompt`, yielded as they are made."""
        return CompletionStream(self, prompt, self.config(config, **kwargs))

    def generate(self, prompt: str, config: GenerationConfig | None = None, **kwargs) -> Completion:
        """The completion of `prompt` (the stream, run to the end)."""
        stream = self.stream(prompt, config, **kwargs)
        for _ in stream:
            pass
        return stream.completion


def load(folder: str | Path, provider: str = "auto", verify: bool = True, threads: int | None = None) -> Model:
    """Load an export folder. provider: "auto" (CUDA if it works, else CPU with a warning), "cpu" or "cuda".

    verify=False skips the sha256 check of every file (sizes are still checked).
    """
    return Model(folder, provider=provider, verify=verify, threads=threads)
