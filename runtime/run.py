"""One generation run from prompts to results: drives the search step by step
and turns each row's tokens into text deltas (UTF-8 safe, stop strings applied).

prompt -> ids -> prefill -> step -> logits -> processors -> token -> text: the
CLI, the streaming API and the app all consume this one path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .beam_search import BeamSearch
from .config import GenerationConfig
from .detokenizer import StreamDecoder
from .generator import STOP, Generator, Timing, TokenLogprobs
from .stops import StopMatcher


@dataclass
class SequenceResult:
    """One generated sequence."""

    token_ids: list[int]  # generated ids only, up to where it stopped (eos included)
    text: str  # their text, cut just before a stop string if one was met
    finish_reason: str | None  # "eos", "length", "context", "stop" or "cancelled"
    score: float | None = None  # beam search: HF's sequence score
    logprobs: list[TokenLogprobs] | None = None  # with config.logprobs: one entry per token


@dataclass
class Completion:
    """One prompt's results."""

    prompt: str
    prompt_token_ids: list[int]  # what the model saw: the bos token for an empty prompt
    sequences: list[SequenceResult] = field(default_factory=list)  # num_return_sequences of them, best first for beams
    timing: Timing = field(default_factory=Timing)  # of the whole run (shared by a batch)

    @property
    def token_ids(self) -> list[int]:
        return self.sequences[0].token_ids

    @property
    def text(self) -> str:
        return self.sequences[0].text

    @property
    def finish_reason(self) -> str | None:
        return self.sequences[0].finish_reason


def make_search(session, config: GenerationConfig, rng: np.random.Generator | None = None) -> Generator | BeamSearch:
    """The step-API search a config asks for: BeamSearch when num_beams > 1, else Generator."""
    if config.num_beams > 1:
        return BeamSearch(session, config)
    return Generator(session, config, rng)


class Run:
    """Generation for a batch of prompts; `deltas()` yields (row, text) as text appears."""

    def __init__(
        self,
        model,
        prompts: list[str],
        config: GenerationConfig,
        rng: np.random.Generator | None = None,
        prompt_ids: list[list[int]] | None = None,
    ):
        """prompt_ids, when given, are what the model sees instead of the encoded prompts
        (the desktop app passes the right end of a text longer than the context)."""
        self._tokenizer = model.tokenizer
        self.prompts = prompts
        self.prompt_ids = prompt_ids if prompt_ids is not None else [model.encode_prompt(p) for p in prompts]
        self.config = config
        self.search = make_search(model.session, config, rng)
        # Greedy search and sampling stream text per row; beams give text only at the end.
        self.rows_per_prompt = 0 if config.num_beams > 1 else config.num_return_sequences
        self.search.append_tokens(self.prompt_ids)
        rows = len(prompts) * self.rows_per_prompt
        self._decoders = [StreamDecoder(self._tokenizer) for _ in range(rows)]
        self._stops = [StopMatcher(config.stop_strings) for _ in range(rows)]
        self.texts = [""] * rows
        self._cancel = threading.Event()

    def _emit(self, row: int, text: str) -> str:
        text = self._stops[row].feed(text)
        if self._stops[row].stopped:
            self.search.finish_row(row, STOP)
        self.texts[row] += text
        return text

    def deltas(self) -> Iterator[tuple[int, str]]:
        """Run to the end, yielding (row, text delta) for greedy search and sampling."""
        while True:
            if self._cancel.is_set():
                self.search.cancel()  # between two steps, on this thread: a token is never half recorded
            if self.search.is_done():
                break
            if self.rows_per_prompt == 0:
                self.search.generate_next_token()
                continue
            running = self.search.running.copy()  # the rows this step makes a real token for
            tokens = self.search.generate_next_token()
            for row in np.flatnonzero(running):
                text = self._emit(row, self._decoders[row].push(int(tokens[row])))
                if text:
                    yield int(row), text
        yield from self._flush()

    def _flush(self) -> Iterator[tuple[int, str]]:
        for row, decoder in enumerate(self._decoders):
            if self._stops[row].stopped:
                continue
            tail = self._emit(row, decoder.flush())
            if not self._stops[row].stopped:
                held = self._stops[row].flush()  # it never became a stop string
                self.texts[row] += held
                tail += held
            if tail:
                yield row, tail

    def cancel(self) -> None:
        """Stop after the current token; the results keep what was made. Any thread may call it:
        the iterating thread applies it before its next step (beam search too)."""
        self._cancel.set()

    def completions(self) -> list[Completion]:
        """The results, one Completion per prompt (call after deltas() is exhausted)."""
        out = []
        for p, (prompt, ids) in enumerate(zip(self.prompts, self.prompt_ids)):
            completion = Completion(prompt, ids, timing=self.search.timing)
            if self.rows_per_prompt == 0:
                for h in self.search.hypotheses(p):
                    completion.sequences.append(SequenceResult(h.token_ids, self._tokenizer.decode(h.token_ids), h.finish_reason, h.score, h.logprobs))
            for row in range(p * self.rows_per_prompt, (p + 1) * self.rows_per_prompt):
                token_ids = self.search.generated_ids(row)
                logprobs = self.search.logprobs[row][: len(token_ids)] if self.config.logprobs is not None else None
                completion.sequences.append(SequenceResult(token_ids, self.texts[row], self.search.finish_reasons[row], None, logprobs))
            out.append(completion)
        return out
