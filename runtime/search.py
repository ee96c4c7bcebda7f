"""The one search interface every decoding method implements (greedy search,
sampling, beam search, beam sampling), after onnxruntime-genai's Generator:

    search.append_tokens(prompt_ids)      # prefill: one list of ids per prompt (or one flat list)
    while not search.is_done():
        search.generate_next_token()       # run the model one step, then choose tokens
    search.results()                       # per prompt: [SequenceResult, ...]

`generate_next_token` is two halves, so that the slot engine can batch the
first across many searches: the decode state runs the tokens chosen last step
(`state.step()`), then `advance()` chooses the next ones from the logits.
`cancel()` stops the search; its results keep what was made, marked
"cancelled"; `fail(error)` stops it when a step raised for it alone.
`take_made()` gives a streaming caller the tokens made since it last asked
(whichever thread drove the steps). The slot engine prefills in chunks with
`begin_prefill` and `prefill_some`; `append_tokens` is the same path at once.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .config import GenerationConfig
from .constraints import ConstraintFactory, RowConstraints
from .decode_state import DecodeState, as_rows, check_prompts
from .results import SequenceResult, TokenLogprobs
from .session import DecoderSession

# A stop-string check on a sequence's new token ids [new]: does the text of its last tokens contain a stop string?
StopCheck = Callable[[np.ndarray], bool]
# One token a step made for streaming: (sequence index, token id, its logprobs record or None).
Made = tuple[int, int, TokenLogprobs | None]


class Search:
    """What every search shares: the step protocol on a DecodeState."""

    streams = True  # take_made() gives tokens as they are made; False: only results() at the end (beams)

    def __init__(self, session: DecoderSession, config: GenerationConfig, rows_per_prompt: int):
        self.config = config
        self.state = DecodeState(session, config, rows_per_prompt)
        self._done = False  # set when the search has finished (or was cancelled)
        self.error: Exception | None = None  # why the search failed (fail()); its caller re-raises it
        self.constraint: ConstraintFactory | None = None  # makes each row's constraint state (constraints.py)
        self.constraints: RowConstraints | None = None  # that state, once the rows exist

    @property
    def timing(self):
        return self.state.timing

    def append_tokens(self, ids) -> None:
        """Run the prompts through the model: one list of ids per prompt (or one flat list)."""
        prompts = as_rows(ids)
        check_prompts(prompts, self.state.info)
        self.begin_prefill(prompts)
        self.prefill_some(None)

    def begin_prefill(self, prompts: list[list[int]]) -> None:
        """append_tokens in steps (the slot engine's chunked prefill, for prompts it checked): take the
        rows now, then run the prompts' tokens with prefill_some, a budget at a time."""
        if self._done:
            raise RuntimeError("this search was cancelled before it started: make a new one")
        self.state.begin(prompts)

    def prefill_some(self, budget: float | None, least: int = 1) -> float:
        """Run more prompt tokens, as many as `budget` pays for and at least `least` (DecodeState.prefill_some);
        returns the budget spent. Once the last has run the search is set up to choose its first tokens,
        as after append_tokens."""
        ran = self.state.prefill_some(budget, least)
        if not self.state.prefilling:
            if self.constraint is not None:
                self.constraints = RowConstraints(self.constraint, self.state.rows)
            self._started()
        return ran

    def generate_next_token(self) -> np.ndarray:
        """Run the last step's tokens through the model, then choose the next ones (one per row)."""
        self._check_running()
        start = time.perf_counter()
        self.state.step()
        tokens = self.advance()
        self.timing.decode_s += time.perf_counter() - start
        return tokens

    def is_done(self) -> bool:
        """True once every sequence has stopped (or the search was cancelled)."""
        return self._done

    def cancel(self) -> None:
        """Stop now; results() keeps what was made, marked "cancelled". Before append_tokens it
        only marks the search done (an engine drops it from its queue)."""
        if not self._done:
            if self.state.started:
                self._cancelled()
            self._done = True
            self.state.release_all()

    def fail(self, error: Exception) -> None:
        """A step raised for this search alone (its prefill, its choice): stop it and give its rows
        back, keeping the error for whoever reads its results. Others in the same engine go on."""
        self.error = error
        self._done = True
        self.state.release_all()

    def _check_started(self) -> None:
        if not self.state.started:
            raise RuntimeError("call append_tokens first")

    def _check_running(self) -> None:
        self._check_started()
        if self._done:
            raise RuntimeError("generation is done: check is_done() before generate_next_token")

    def _finish(self) -> None:
        """Every sequence has stopped: give the rows back."""
        self._done = True
        self.state.release_all()

    # --- what each search defines -----------------------------------------------------

    def _started(self) -> None:
        """After the prefill: set up per-row state."""

    def advance(self) -> np.ndarray:
        """Choose one token per row from state.logits (the model has run); return them [rows]."""
        raise NotImplementedError

    def take_made(self) -> list[Made]:
        """The tokens made since the last call, for a stream to show now."""
        raise NotImplementedError

    def results(self) -> list[list[SequenceResult]]:
        """Per prompt, its sequences (num_return_sequences, best first for beams); text is left empty
        for the caller, who owns the tokenizer."""
        raise NotImplementedError

    def _cancelled(self) -> None:
        """Mark what cancel() leaves behind."""
