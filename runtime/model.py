"""A loaded export folder and the calls most programs want: generate and stream
(classify for a GPT2ForSequenceClassification export: classifier.py).

`load(folder)` checks the manifest and the graph, opens the session on the
requested provider and reads the model's generation defaults. `load()` with no
folder takes the model that ships inside gpt2onnx (DEFAULT_MODEL). `stream()` yields
text deltas as tokens are made; `generate()` runs the same Run to the end.

One Model may serve many threads at once: each call has its own Run and search,
and the session and tokenizer are shared read-only (onnxruntime's run is
thread-safe).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import overload

import numpy as np

from . import classifier, contract, scoring
from .classifier import Classification, ClassifierSession
from .config import GenerationConfig
from .decode_state import check_prompts
from .engine import Engine
from .errors import ModelLoadError, UsageError, short
from .manifest import inside, model_info, read_json, read_manifest, verify_files
from .run import Completion, Run
from .results import TokenLogprobs
from .scoring import Score
from .constraints import ConstraintFactory
from .search import Search
from .searches import make_search
from .session import DecoderSession
from .stops import stop_check
from .tokenizer import Tokenizer

# A small GPT-2 that gpt2onnx trained on Debian's fortune cookies and exported
# itself (its training.json says how): what runs when no model is named, offline.
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"
MAX_THREADS = 1024  # onnxruntime would try to start any number asked for


def _rng(seed: int | None) -> np.random.Generator:
    """numpy's generator for a seed (None: fresh entropy); numpy refuses negative seeds, so do we, in one line."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise UsageError(f"seed must be a whole number >= 0, got {short(seed)}")
    return np.random.default_rng(seed)


class CompletionStream:
    """Iterates the text deltas of one prompt's completion; `.completion` holds the result.

    Generation happens as you iterate: call close() to cancel after the current
    token. close() may come from another thread while one thread iterates (a
    stop button): that thread's loop then ends after the token it is making,
    and it still receives the text of every token made.
    """

    def __init__(self, run: Run):
        self._run = run
        self._deltas = run.deltas()
        self._consumer: int | None = None  # the thread that iterates
        self.completion: Completion | None = None

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        if self._consumer is None:
            self._consumer = threading.get_ident()
        for delta in self._deltas:
            if delta.text:
                return delta.text
        if self.completion is None:
            self.completion = self._run.completions()[0]
        raise StopIteration

    def close(self) -> None:
        """Cancel: stop after the current token; `.completion` keeps what was made.

        On the iterating thread (or before iteration began) it finishes at once
        and `.completion` is set. From another thread it returns at once; the
        iterating thread's loop ends within one token and sets `.completion`.
        """
        self._run.cancel()
        if self._consumer in (None, threading.get_ident()):
            for _ in self:
                pass


def _folder(folder: str | Path | None) -> Path:
    """The export folder to use (None: the shipped model), refused in one line if it is not a folder."""
    path = DEFAULT_MODEL if folder is None else Path(folder).expanduser()
    if not path.exists():
        raise ModelLoadError(f"no such model folder: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file: pass the export folder that holds it")
    return path


def _generation_config(folder: Path, info) -> GenerationConfig:
    """The model's generation defaults: its generation_config.json over its eos/bos tokens
    (a classifier generates nothing: its eos/bos tokens alone, whatever file is there)."""
    defaults = {"eos_token_id": info.eos_token_id, "bos_token_id": info.bos_token_id}
    path = inside(folder, contract.GENERATION_CONFIG_FILE)
    data = read_json(path) if path.is_file() and info.task == contract.TEXT_GENERATION else {}
    try:
        config = GenerationConfig.from_dict(defaults | data)
        check_against_model(config, info)
        return config
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{path} has settings gpt2onnx can't use ({str(e).splitlines()[0]}): fix or delete it") from None


def check_against_model(config: GenerationConfig, info) -> None:
    """Settings that are valid alone but not for this model: token ids outside its vocabulary."""
    vocab = info.vocab_size
    named = [("eos_token_id", t) for t in config.eos_token_ids]
    named += [(name, getattr(config, name)) for name in ("pad_token_id", "bos_token_id")]
    named += [("bad_words_ids", t) for seq in config.bad_words_ids or () for t in seq]
    named += [("sequence_bias", t) for seq, _ in config.sequence_bias or () for t in seq]
    for name, token in named:
        if token is not None and token >= vocab:
            raise UsageError(f"{name} has token id {short(token)}, outside the model's vocabulary [0, {vocab})")
    banned = {seq[0] for seq in config.bad_words_ids or () if len(seq) == 1} - set(config.eos_token_ids)
    if len(banned) >= vocab - len(set(config.eos_token_ids)) and (config.min_new_tokens or config.min_length):
        raise UsageError("bad_words_ids bans every token but eos, and min_new_tokens (or min_length) bans eos: nothing could be generated; ban fewer tokens")
    if config.logprobs is not None and config.logprobs > vocab:
        raise UsageError(f"logprobs must be <= the vocabulary size ({vocab}), got {short(config.logprobs)}")


def check_task(folder: str | Path | None, task: str) -> None:
    """Refuse (UsageError, one line) a folder exported for another task than `task`, from its manifest
    alone (no hashing, no session): commands check before the slow load."""
    path = _folder(folder)
    classifier.check_task(path, model_info(read_manifest(path), path), task)


def read_defaults(folder: str | Path | None = None) -> GenerationConfig:
    """A model folder's generation defaults, read without loading the model (no hashing, no session):
    the command line checks its flags against them before the slow load, and a classifier is refused."""
    check_task(folder, contract.TEXT_GENERATION)
    path = _folder(folder)
    return _generation_config(path, model_info(read_manifest(path), path))


class Model:
    """An export folder loaded for generation (or, a classifier's, for classify)."""

    def __init__(self, folder: str | Path | None = None, provider: str = "auto", verify: bool = True, threads: int | None = None):
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS):
            raise UsageError(f"threads must be a whole number from 0 (onnxruntime's default) to {MAX_THREADS}, got {short(threads)}")
        self.folder = _folder(folder)
        self.manifest = read_manifest(self.folder)
        self.info = model_info(self.manifest, self.folder)
        verify_files(self.folder, self.manifest, check_hashes=verify)
        self.tokenizer = Tokenizer(inside(self.folder, contract.TOKENIZER_FILE))
        if self.tokenizer.vocab_size > self.info.vocab_size:
            raise ModelLoadError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model only {self.info.vocab_size}: "
                "the tokenizer belongs to another model; re-export with the checkpoint's own tokenizer"
            )
        self.generation_config = _generation_config(self.folder, self.info)
        if self.info.task == contract.TEXT_CLASSIFICATION:
            self.session: DecoderSession | ClassifierSession = ClassifierSession(self.folder / contract.MODEL_FILE, self.info, provider, threads)
        else:
            self.session = DecoderSession(self.folder / contract.MODEL_FILE, self.info, provider, threads)

    @property
    def provider(self) -> str:
        """The provider actually running: "cuda" or "cpu"."""
        return self.session.provider

    @property
    def provider_note(self) -> str | None:
        """Why provider="auto" is on the CPU, or None."""
        return self.session.provider_note

    def require_task(self, task: str) -> None:
        """Refuse (UsageError, one line) a call for `task` (contract.TEXT_GENERATION or
        TEXT_CLASSIFICATION) on a model exported for the other one."""
        classifier.check_task(self.folder, self.info, task)

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
        """The model's defaults (or `config`) with `kwargs` applied, as `model.generate(**kwargs)` does.
        Validated once here; the searches trust it."""
        config = (config or self.generation_config).update(**kwargs)
        check_against_model(config, self.info)
        return config

    def generator(self, config: GenerationConfig | None = None, *, seed: int | None = None, constraint: ConstraintFactory | None = None, **kwargs) -> Search:
        """A search with the step API (append_tokens, generate_next_token, is_done, results) on this
        model's session: beam search when num_beams > 1, else greedy search or sampling. `constraint`
        makes a per-row state that masks each choice and follows the row's tokens (constraints.py)."""
        self.require_task(contract.TEXT_GENERATION)
        config = self.config(config, **kwargs)
        return make_search(self.session, config, _rng(seed), stop_check(self.tokenizer.decode, config.stop_strings), constraint)

    def engine(self, slots: int = 1, capacity: int | None = None, step_tokens: int | None = None) -> Engine:
        """A slot engine on this model's session: `slots` rows of a KV cache (each `capacity` tokens,
        default n_positions) that requests join and leave, and that keep their prefixes for reuse.
        `step_tokens` caps the tokens one step runs (running rows first, then prompt chunks), so a long
        prompt is prefilled over several steps while the others decode; None: no cap.
        Pass it to generate() and stream(); drive it from one thread."""
        self.require_task(contract.TEXT_GENERATION)
        return Engine(self.session, slots, capacity, step_tokens)

    def run(self, prompts: list[str], config: GenerationConfig, *, seed: int | None = None, engine: Engine | None = None,
            prompt_ids: list[list[int]] | None = None, constraint: ConstraintFactory | None = None, checked: bool = False) -> Run:
        """A Run of already validated settings over prompts (or over `prompt_ids` given for them;
        `checked`: check_prompts already passed them, as a server checks before it queues)."""
        self.require_task(contract.TEXT_GENERATION)
        ids = prompt_ids if prompt_ids is not None else [self.encode_prompt(p) for p in prompts]
        return Run(self.session, self.tokenizer, ids, config, _rng(seed), engine=engine, prompts=prompts, constraint=constraint, checked=checked)

    def stream(self, prompt: str, config: GenerationConfig | None = None, *, seed: int | None = None, engine: Engine | None = None, **kwargs) -> CompletionStream:
        """Text deltas of the completion of `prompt`, yielded as they are made (one sequence)."""
        self.require_task(contract.TEXT_GENERATION)
        config = self.config(config, **kwargs)
        if config.num_return_sequences > 1:
            raise UsageError("stream() gives one sequence: use generate() for num_return_sequences > 1")
        return CompletionStream(self.run([prompt], config, seed=seed, engine=engine))

    @overload
    def generate(self, prompt: str, config: GenerationConfig | None = None, *, seed: int | None = None, engine: Engine | None = None, constraint: ConstraintFactory | None = None, **kwargs) -> Completion: ...
    @overload
    def generate(self, prompt: list[str], config: GenerationConfig | None = None, *, seed: int | None = None, engine: Engine | None = None, constraint: ConstraintFactory | None = None, **kwargs) -> list[Completion]: ...

    def generate(self, prompt, config=None, *, seed=None, engine=None, constraint=None, **kwargs):
        """Complete a prompt (-> Completion) or a batch of prompts (-> list of Completion, run as one
        batch). `seed` makes sampling reproducible; `engine` runs it in a slot engine (prefix reuse);
        `constraint` makes each row's constraint state (constraints.py)."""
        self.require_task(contract.TEXT_GENERATION)
        iterable = hasattr(prompt, "__iter__") and not isinstance(prompt, (str, bytes, bytearray))
        prompts = list(prompt) if iterable else [prompt]
        if not prompts:
            raise UsageError("no prompts given")
        if not all(isinstance(p, str) for p in prompts):
            raise UsageError(f"a prompt must be a str or a list of str, got {type(next(p for p in prompts if not isinstance(p, str))).__name__}")
        run = self.run(prompts, self.config(config, **kwargs), seed=seed, engine=engine, constraint=constraint)
        for _ in run.deltas():
            pass
        completions = run.completions()
        return completions[0] if isinstance(prompt, str) else completions

    def score(self, texts: list[str], stride: int | None = None) -> list[Score]:
        """Teacher-forced log-probability and perplexity of each text (a sliding window of
        n_positions tokens every `stride` for texts longer than the context)."""
        self.require_task(contract.TEXT_GENERATION)
        if isinstance(texts, str):
            raise UsageError("score() takes a list of texts: wrap a single text in a list")
        ids_list = [self.tokenizer.encode(text) for text in texts]
        for i, ids in enumerate(ids_list):
            scoring.check_length(len(ids), f"text {i} ({texts[i][:30]!r})")
        out = []
        for text, tokens in zip(texts, scoring.score_tokens(self.session, ids_list, stride)):
            logprob = float(tokens.sum())
            out.append(Score(text, len(tokens), logprob, scoring.perplexity(logprob, len(tokens)), tuple(tokens.tolist())))
        return out

    def classify(self, texts: list[str]) -> list[Classification]:
        """Each text's label and the probability of every label (a GPT2ForSequenceClassification
        export), run in right-padded batches."""
        self.require_task(contract.TEXT_CLASSIFICATION)
        if isinstance(texts, str):
            raise UsageError("classify() takes a list of texts: wrap a single text in a list")
        texts = list(texts)
        return classifier.classify(self.session, texts, [self.tokenizer.encode(text) for text in texts])

    def check_prompts(self, prompt_ids: list[list[int]]) -> None:
        """Refuse (UsageError) prompts this model can't run: empty, ids outside the vocabulary,
        longer than the context. A server checks before it queues a request."""
        self.require_task(contract.TEXT_GENERATION)
        check_prompts(prompt_ids, self.info)

    def prompt_logprobs(self, ids: list[int], top_n: int = 0) -> list[TokenLogprobs]:
        """Each prompt token after the first: its log-probability given the ones before, with the
        top_n alternatives there (what OpenAI's echo with logprobs reports)."""
        self.require_task(contract.TEXT_GENERATION)
        return scoring.prompt_logprobs(self.session, ids, top_n)


def load(folder: str | Path | None = None, provider: str = "auto", verify: bool = True, threads: int | None = None) -> Model:
    """Load an export folder (None: the shipped default model, DEFAULT_MODEL).

    provider: "auto" (CUDA if it works, else CPU with a warning), "cpu" or "cuda".

    verify=False skips the sha256 check of every file (sizes are still checked).
    """
    return Model(folder, provider=provider, verify=verify, threads=threads)
