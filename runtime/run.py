"""One generation run from prompt ids to results: drives any search step by step
(alone, or in a slot engine beside other requests) and turns each sequence's
tokens into text deltas (UTF-8 safe, stop strings applied).

ids -> prefill -> step -> logits -> processors -> token -> text: the CLI, the
streaming API and the app all consume this one path. Run does not know which
search it drives: a step's tokens come from `search.take_made()`, and a search that
streams nothing (beams) is replayed from its results when it ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .config import GenerationConfig
from .detokenizer import StreamDecoder
from .engine import Engine
from .results import CANCELLED, SequenceResult, Timing, TokenLogprobs
from .constraints import ConstraintFactory
from .searches import make_search
from .session import DecoderSession
from .stops import StopMatcher, stop_check
from .tokenizer import Tokenizer


@dataclass
class Delta:
    """New text of one sequence, and the tokens that made it."""

    row: int  # the sequence: prompt index * num_return_sequences + its index
    text: str  # may be "" when the tokens' text was cut by a stop string
    token_ids: list[int]  # the tokens this text completes (a character can span several)
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


class _Row:
    """One sequence's stream: its decoder, stop matcher, text, and tokens not yet sent."""

    def __init__(self, tokenizer: Tokenizer, stops: tuple[str, ...], prompt_ids: list[int]):
        self.decoder, self.stops = StreamDecoder(tokenizer, prompt_ids[-1:]), StopMatcher(stops)
        self.text = ""
        self.tokens: list[int] = []
        self.records: list[TokenLogprobs] = []

    def push(self, token: int, record: TokenLogprobs | None) -> str:
        self.tokens.append(token)
        if record is not None:
            self.records.append(record)
        text = self.stops.feed(self.decoder.push(token))
        self.text += text
        return text

    def flush(self) -> str:
        if self.stops.stopped:
            return ""
        tail = self.stops.feed(self.decoder.flush())
        if not self.stops.stopped:
            tail += self.stops.flush()  # it never became a stop string
        self.text += tail
        return tail

    def delta(self, row: int, text: str, logprobs: bool) -> Delta:
        out = Delta(row, text, self.tokens, self.records if logprobs else None)
        self.tokens, self.records = [], []
        return out


class Run:
    """Generation for a batch of prompt ids; `deltas()` yields Deltas as text appears."""

    def __init__(
        self,
        session: DecoderSession,
        tokenizer: Tokenizer,
        prompt_ids: list[list[int]],
        config: GenerationConfig,
        rng: np.random.Generator | None = None,
        *,
        engine: Engine | None = None,
        prompts: list[str] | None = None,
        constraint: ConstraintFactory | None = None,
        checked: bool = False,
    ):
        """Runs alone, or in `engine` beside other requests (then the prefill happens at its first
        step). `prompts` are the texts the ids came from, for the results."""
        self.tokenizer, self.config, self.engine = tokenizer, config, engine
        self.prompt_ids = prompt_ids
        self.prompts = prompts if prompts is not None else [tokenizer.decode(ids) for ids in prompt_ids]
        self.search = make_search(session, config, rng, stop_check(tokenizer.decode, config.stop_strings), constraint)
        n = config.num_return_sequences
        self._rows = [_Row(tokenizer, config.stop_strings, prompt_ids[row // n]) for row in range(len(prompt_ids) * n)]
        self._cancel = threading.Event()
        self._cancel_sent = False  # the engine was asked to cancel the search
        self.finished = False  # the search is done and every delta was given out
        if engine is not None:
            engine.submit(self.search, prompt_ids, checked)
        else:
            self.search.append_tokens(prompt_ids)

    @property
    def texts(self) -> list[str]:
        return [row.text for row in self._rows]

    def deltas(self) -> Iterator[Delta]:
        """Run to the end, yielding each sequence's new text with its tokens (this thread drives the
        search, or the engine it shares with other requests)."""
        while True:
            yield from self.poll()
            if self.finished:
                return
            if self.engine is not None:
                self.engine.step()  # may advance other requests too; each takes its own tokens
            elif self._cancel.is_set():  # between two steps, on this thread
                self.search.cancel()
            else:
                self.search.generate_next_token()

    def poll(self) -> list[Delta]:
        """The deltas of the tokens made since the last poll, without running anything: a scheduler
        that drives the engine for many runs calls it after each engine.step(). Once the search is
        done it also gives the replayed beams and each sequence's last text, and sets `finished`."""
        if self.finished:
            return []
        if self._cancel.is_set() and self.engine is not None and not self._cancel_sent:
            self.engine.cancel(self.search)  # applied at the engine's next step
            self._cancel_sent = True
        if self.search.error is not None:  # a step failed for this run alone (the engine went on)
            self.finished = True
            raise self.search.error
        logprobs = self.config.logprobs is not None
        out = []
        for row, token, record in self.search.take_made():
            text = self._rows[row].push(token, record)
            if text:
                out.append(self._rows[row].delta(row, text, logprobs))
        if not self.search.is_done():
            return out
        if not self.search.streams:  # beams: replay the results as a stream
            for row, sequence in self._results():
                for token, record in zip(sequence.token_ids, sequence.logprobs or [None] * len(sequence.token_ids)):
                    text = self._rows[row].push(token, record)
                    if text:
                        out.append(self._rows[row].delta(row, text, logprobs))
        for row, state in enumerate(self._rows):
            tail = state.flush()
            if tail or state.tokens:
                out.append(state.delta(row, tail, logprobs))
        self.finished = True
        return out

    def _results(self) -> list[tuple[int, SequenceResult]]:
        """(row, result) of every sequence; nothing made if the search was cancelled before it started."""
        k = self.config.num_return_sequences
        if not self.search.state.started:
            return [(r, SequenceResult([], "", CANCELLED)) for r in range(len(self._rows))]
        return [(p * k + j, s) for p, sequences in enumerate(self.search.results()) for j, s in enumerate(sequences)]

    def cancel(self) -> None:
        """Stop after the current token; the results keep what was made. Any thread may call it:
        the iterating (or polling) thread applies it before its next step (beam search too)."""
        self._cancel.set()

    def completions(self) -> list[Completion]:
        """The results, one Completion per prompt (call after deltas() is exhausted)."""
        k = self.config.num_return_sequences
        out = [Completion(prompt, ids, timing=self.search.timing) for prompt, ids in zip(self.prompts, self.prompt_ids)]
        for row, sequence in self._results():
            sequence.text = self._rows[row].text
            out[row // k].sequences.append(sequence)
        return out
