"""The completion controller: the model, its generation worker and thread, and
the completion they stream into the document.

It runs a completion's state machine (idle -> streaming -> pending -> accepted
or rejected; Regenerate and branching start over from a point of it) and tells
the window what happened through its own signals; it never touches a widget.

Two rules keep a stopped worker from doing harm:
- a cancelled worker is cut off: its signals are disconnected, and the ones it
  had already queued to the UI thread are dropped (see _Generation.cut);
- never two workers on one model (they would share its slot engine): a stopped
  worker whose thread outlives the stop's wait keeps running, cut off, and the
  next generation waits for its thread to end before it starts.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable

from PySide6.QtCore import QObject, Signal

from gpt2onnx.runtime import Engine, Gpt2OnnxError, Model, TokenLogprobs

from .completion import CompletionTracker, document_text
from .settings import DecodingSettings
from .worker import TOP_ALTERNATIVES, GenerationStats, GenerationWorker, Jobs

STOP_WAIT_MS = 5000  # how long a stop that must settle (accept, reject, ...) waits for the worker's thread


class _Generation(QObject):
    """One worker and, once started, its thread; it relays the worker's signals to the controller.

    The worker's signals reach this object, which lives on the UI thread, queued, and
    it re-emits them there to the controller. Cutting a worker off must also drop
    what it queued before the cut (Qt still delivers a queued call after its
    connection is gone): blocking this relay's signals does that at once."""

    context = Signal(int, int)
    token = Signal(str, object)
    beam = Signal(object)
    finished = Signal(object)
    error = Signal(str)
    NAMES = ("context", "token", "beam", "finished", "error")

    def __init__(self, worker: GenerationWorker, parent: QObject):
        super().__init__(parent)  # the parent holds it until `release` (it may be mid-signal then)
        self.worker = worker
        self.worker_thread = None  # its QThread, once started
        for name in self.NAMES:
            getattr(worker, name).connect(getattr(self, name))

    def cut(self) -> None:
        """Hear nothing more from the worker (it may go on running until it sees its cancel)."""
        self.blockSignals(True)
        for name in self.NAMES:
            getattr(self.worker, name).disconnect(getattr(self, name))
        self.release()

    def release(self) -> None:
        """Let the relay go once the UI thread is back in its event loop (the worker itself
        stays with the controller's Jobs until its thread ends)."""
        self.blockSignals(True)
        self.deleteLater()


class CompletionController(QObject):
    """Owns the model's engine, the generation worker and the completion tracker."""

    started = Signal()  # a generation was asked for (it may wait for a stopped worker to end)
    progress = Signal(float)  # tokens per second so far
    context = Signal(int, int)  # prompt tokens the model sees, tokens dropped from the left
    finished = Signal(object, bool)  # GenerationStats, whether the completion kept any text
    failed = Signal(str)  # a message for the writer
    state_changed = Signal()  # streaming, pending or the model changed

    def __init__(self, tracker: CompletionTracker):
        super().__init__()
        self.tracker = tracker
        self.model: Model | None = None
        self.engine: Engine | None = None  # one slot, kept between completions
        self.token_text: Callable[[int], str] | None = None  # spells the tokens of the tracked completion
        self.stop_wait_ms = STOP_WAIT_MS
        self.jobs = Jobs()  # generation threads, each held until it ends
        self.jobs.all_ended.connect(self._start_when_free)
        self._generation: _Generation | None = None
        self._regenerations = 0
        self._started = 0.0  # perf_counter() when the current worker started
        self._streamed = 0  # tokens streamed by it
        self.cancel_requested_at: float | None = None
        self.last_cancel_latency: float | None = None  # seconds from Stop to the worker's finish
        self.last_stats: GenerationStats | None = None

    @property
    def streaming(self) -> bool:
        """A generation is running, or waiting to start."""
        return self._generation is not None

    def set_model(self, model: Model) -> None:
        if self.streaming:
            self.stop(wait=True)
        self.model = model
        # One slot that keeps the last prompt's keys and values: Regenerate and completing again
        # at the same place run only what changed (prefix reuse).
        self.engine = model.engine(slots=1)
        self.state_changed.emit()

    # ----- the completion's life -----
    def complete(self, position: int, settings: DecodingSettings) -> None:
        """Start a completion at `position` (the window accepts a pending one first)."""
        if self.model is None or self.streaming:
            return
        self.tracker.begin(position)
        self._generate(settings)

    def accept(self) -> bool:
        """Keep the pending completion (stopping it first); False when there was none."""
        if self.streaming:
            self.stop(wait=True)
        if not self.tracker.pending:
            return False
        self.tracker.accept()
        self._regenerations = 0
        self.state_changed.emit()
        return True

    def reject(self) -> None:
        """Stop and remove the pending completion, if any."""
        if self.streaming:
            self.stop(wait=True)
        if self.tracker.pending:
            self.tracker.reject()
        self.state_changed.emit()

    def regenerate(self, settings: DecodingSettings) -> bool:
        """Replace the last completion (pending, or accepted and not edited since) with a new
        one from the next seed; False when there is none to replace."""
        if self.model is None:
            return True  # nothing can run: nothing to start instead either
        if self.streaming:
            self.stop(wait=True)
        start = self.tracker.start
        if self.tracker.pending:
            self.tracker.reject()
        elif self.tracker.spans:
            self.tracker.truncate(0)  # an accepted completion: removing it is one undo step
        else:
            return False
        self._regenerations += 1
        self.tracker.begin(start)
        self._generate(settings, seed_offset=self._regenerations)
        return True

    def branch(self, index: int, text: str, chosen: TokenLogprobs, settings: DecodingSettings) -> bool:
        """Replace span `index` of the completion with `text` (the token `chosen`) and generate
        on; False when there is no such span (or no model)."""
        if self.model is None or index >= len(self.tracker.spans):
            return False
        if self.streaming:
            self.stop(wait=True)
        was_pending = self.tracker.pending
        end = self.tracker.truncate(index)
        if not was_pending:
            self.tracker.begin(end)
        self.tracker.append(text, [chosen])
        self._generate(settings)
        return True

    def stop(self, wait: bool = False) -> None:
        """Cancel generation after the current token (Esc, the Stop button).

        With `wait`, the completion ends here: the worker is cut off, its thread given up
        to stop_wait_ms to end. One that runs on is held until it ends, and the next
        generation starts only then (never two workers on the model's one engine)."""
        generation = self._generation
        if generation is None:
            return
        self.cancel_requested_at = time.perf_counter()
        generation.worker.cancel()
        if not wait:
            return  # it finishes after this token, and says so (_on_finished)
        if generation.worker_thread is not None:
            generation.worker_thread.wait(self.stop_wait_ms)
        generation.cut()  # its thread, if still running, stays in self.jobs: _start_when_free waits for it
        self._generation = None
        self.state_changed.emit()

    def shutdown(self) -> None:
        """Stop every worker and wait for its thread to end.

        No timeout: a cancelled generation ends within a step, while a QThread destroyed
        still running aborts the whole process."""
        if self._generation is not None:
            self._generation.worker.cancel()
            self._generation.cut()
            self._generation = None  # one not started yet never starts
        self.jobs.wait_all()

    # ----- generating -----
    def _generate(self, settings: DecodingSettings, seed_offset: int = 0) -> None:
        """Stream a completion into the tracker at its end (a new one, or a continuation)."""
        try:
            config = self.model.config(**settings.generation_kwargs(), logprobs=TOP_ALTERNATIVES)
        except Gpt2OnnxError as e:
            self.tracker.reject()
            self.failed.emit(f"Can't complete: {e}")
            self.state_changed.emit()
            return
        seed = settings.seed + seed_offset if settings.seed >= 0 else secrets.randbelow(2**31)
        # The prompt is the text before the completion; when it is longer than the context
        # leaves room for, the worker drops its left end (the status bar says how much).
        room = max(1, self.model.info.n_positions - settings.max_new_tokens)
        prompt = document_text(self.tracker.document, 0, self.tracker.end)
        self.token_text = self.model.tokenizer.token_text
        self.cancel_requested_at = None
        generation = self._generation = _Generation(GenerationWorker(self.model, prompt, room, config, seed, self.engine), self)
        generation.context.connect(self.context)
        generation.token.connect(self._on_token)
        generation.beam.connect(self.tracker.extend)
        generation.finished.connect(self._on_finished)
        generation.error.connect(self._on_error)
        self.started.emit()
        self._start_when_free()
        self.state_changed.emit()

    def _start_when_free(self) -> None:
        """Start the waiting generation's worker once no other worker's thread runs."""
        generation = self._generation
        if generation is None or generation.worker_thread is not None or self.jobs.busy():
            return
        self._started, self._streamed = time.perf_counter(), 0
        generation.worker_thread = self.jobs.start(generation.worker, [generation.worker.finished])

    def _on_token(self, text: str, tokens: list[TokenLogprobs]) -> None:
        self.tracker.append(text, tokens)
        self._streamed += max(1, len(tokens))
        elapsed = time.perf_counter() - self._started
        if elapsed > 0:
            self.progress.emit(self._streamed / elapsed)

    def _on_finished(self, stats: GenerationStats) -> None:
        self._generation.release()  # its thread ends on its own; self.jobs holds it till then
        self._generation = None
        self.last_stats = stats
        if self.cancel_requested_at is not None:
            self.last_cancel_latency = time.perf_counter() - self.cancel_requested_at
        kept = bool(self.tracker.spans)
        if not kept:
            self.tracker.reject()
        self.finished.emit(stats, kept)
        self.state_changed.emit()

    def _on_error(self, message: str) -> None:
        self._generation.release()
        self._generation = None
        self.tracker.reject()
        self.failed.emit(f"Generation failed: {message}")
        self.state_changed.emit()
