"""Greedy search and sampling (HF's `do_sample`): one token per row per step.

Each prompt becomes `num_return_sequences` rows. Each step runs the logits
processors, then either takes the most likely token or applies the warpers and
draws from what is left with the request's own numpy Generator. A row that
stops (eos, its budget, the context, a stop string) gives its slot back at
once; the others go on.
"""

from __future__ import annotations

import numpy as np

from . import processors, sampling, warpers
from .config import GenerationConfig
from .errors import UsageError
from .results import CANCELLED, CONTEXT, EOS, LENGTH, STOP, SequenceResult, TokenLogprobs
from .search import Made, Search, StopCheck
from .session import DecoderSession


class Generator(Search):
    """Greedy search or sampling over a batch of prompts. Randomness comes only from `rng`."""

    def __init__(self, session: DecoderSession, config: GenerationConfig, rng: np.random.Generator | None = None, stop: StopCheck | None = None):
        if config.num_beams > 1:
            raise UsageError("num_beams > 1 needs BeamSearch, not Generator")
        super().__init__(session, config, config.num_return_sequences)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.stop = stop
        self.finish_reasons: list[str | None] = []  # per row; None while running
        self.running = np.zeros(0, bool)  # [rows]: still generating
        self.logprobs: list[list[TokenLogprobs]] = []  # per row, when config.logprobs is set
        self.slides = 0  # times a row's context window slid (context_overflow="slide")
        self._ended_at: list[int | None] = []  # per row: tokens made when it stopped
        self._to_slide = np.zeros(0, bool)  # [rows]: full context, slide before the next choice
        self._taken = 0  # steps whose tokens take_made has given out
        self._eos = np.array(config.eos_token_ids, np.int64)
        self._eos_ids = frozenset(config.eos_token_ids)
        self._running_rows = 0  # running.sum(), kept as a Python int
        self._slide_due = False  # _to_slide.any()
        self._pad = np.int64(config.pad)
        self._processors = processors.chain(config)
        self._history = self.state.history()  # made once: it reads the state as processors ask

    def _started(self) -> None:
        rows = self.state.rows
        self.finish_reasons = [None] * rows
        self.running = np.ones(rows, bool)
        self._running_rows = rows
        self._ended_at = [None] * rows
        self.logprobs = [[] for _ in range(rows)]
        self._to_slide = np.zeros(rows, bool)
        if self.state.budget == 0:
            for row in range(rows):
                self._finish_row(row, LENGTH)
            self._finish()

    @property
    def sequences(self) -> np.ndarray:
        """Prompt and generated ids so far, int64 [rows, prompt + new], left-padded."""
        return self.state.tokens[:, : self.state.length]

    def _choose(self, logits: np.ndarray) -> np.ndarray:
        """Processors, then (when sampling) warpers and a draw: logits [rows, vocab] -> ids [rows]."""
        scores = processors.apply(self._processors, logits, self._history) if self._processors else logits
        if self.constraints is not None:
            scores = self.constraints.apply(scores, self.running)
        if not self.config.do_sample:
            return sampling.greedy(scores)
        return sampling.sample_rows(warpers.warp_rows(scores, self.config), self.rng)

    def advance(self) -> np.ndarray:
        """Choose one token per row (pad for rows already finished) and return them [rows]."""
        self._check_running()
        state = self.state
        if self._slide_due:
            for row in np.flatnonzero(self._to_slide):
                state.slide(row)
                self.slides += 1
            self._to_slide[:] = self._slide_due = False
        # The usual step (every row running) is kept to a few array ops: after onnxruntime's run
        # the CPU caches are cold, and each numpy call costs microseconds per token.
        every = self._running_rows == state.rows
        running = self.running.copy()  # [rows]: the rows this step makes a real token for
        tokens = self._choose(state.logits)  # [rows]
        if not every:
            tokens = np.where(running, tokens, self._pad)
        if self.config.logprobs is not None:
            self._record_logprobs(tokens, running)
        state.push(tokens)
        if self.constraints is not None:
            self.constraints.accept(tokens, running)
        self._update_finished(tokens, running)
        if self._running_rows == state.rows and not self._slide_due:
            state.schedule()
        else:
            state.schedule(self.running & ~self._to_slide)
        if not self._running_rows:
            self._finish()
        return tokens

    def _record_logprobs(self, tokens: np.ndarray, running: np.ndarray) -> None:
        chosen, top_ids, top_logp = sampling.logprobs(self.state.logits, tokens, self.config.logprobs)
        for r in np.flatnonzero(running):
            top = list(zip(top_ids[r].tolist(), top_logp[r].tolist()))
            self.logprobs[r].append(TokenLogprobs(int(tokens[r]), float(chosen[r]), top))

    def _update_finished(self, tokens: np.ndarray, running: np.ndarray) -> None:
        state = self.state
        at_length = state.timing.new_tokens >= state.budget
        some_eos = not self._eos_ids.isdisjoint(tokens.tolist())  # Python's set test: no array op
        if not (at_length or some_eos or self.stop is not None or state.most_fed >= state.info.n_positions):
            return  # the usual step: no row stops (a few scalar checks, not a dozen array ops)
        eos = running & (tokens[:, None] == self._eos[None, :]).any(axis=1)  # [rows]
        stop = np.zeros_like(running)  # [rows]
        if self.stop is not None:
            for r in np.flatnonzero(running & ~eos):
                stop[r] = self.stop(state.tokens[r, state.width : state.length])
        length = running & at_length
        full = running & (state.fed >= state.info.n_positions)  # no position left to run the token just chosen
        if self.config.context_overflow == "slide":
            self._to_slide |= full & ~(eos | stop | length)
            self._slide_due = bool(self._to_slide.any())
            full[:] = False
        for r in np.flatnonzero(eos | stop | length | full):
            self._finish_row(r, EOS if eos[r] else STOP if stop[r] else LENGTH if length[r] else CONTEXT)

    def _finish_row(self, row: int, reason: str) -> None:
        """Stop one row: it gets padding from now on, and its slot goes back at once."""
        if self.finish_reasons[row] is None:
            self.finish_reasons[row] = reason
            self.running[row] = False
            self._running_rows -= 1
            self._ended_at[row] = self.state.timing.new_tokens
            self.state.release(row)

    def _cancelled(self) -> None:
        for row in range(self.state.rows):
            self._finish_row(row, CANCELLED)

    def take_made(self) -> list[Made]:
        """Every real token made since the last call, read back from the token buffer: a row made
        one at each step until it stopped."""
        state, made = self.state, []
        for step in range(self._taken, state.timing.new_tokens):
            for r in range(state.rows):
                if self._ended_at[r] is None or step < self._ended_at[r]:
                    record = self.logprobs[r][step] if self.config.logprobs is not None else None
                    made.append((r, int(state.tokens[r, state.width + step]), record))
        self._taken = state.timing.new_tokens
        return made

    def get_next_tokens(self) -> np.ndarray:
        """The tokens chosen by the last generate_next_token [rows]."""
        return self.state.pending

    def generated_ids(self, row: int) -> list[int]:
        """Row `row`'s new token ids up to where it stopped (its eos included), without padding."""
        self._check_started()
        end = self._ended_at[row] if self._ended_at[row] is not None else self.state.timing.new_tokens
        return self.state.tokens[row, self.state.width : self.state.width + end].tolist()

    def results(self) -> list[list[SequenceResult]]:
        self._check_started()
        k, out = self.state.rows_per_prompt, []
        for p in range(len(self.state.prompts)):
            sequences = []
            for row in range(p * k, (p + 1) * k):
                ids = self.generated_ids(row)
                logprobs = self.logprobs[row][: len(ids)] if self.config.logprobs is not None else None
                sequences.append(SequenceResult(ids, "", self.finish_reasons[row], None, logprobs))
            out.append(sequences)
        return out
