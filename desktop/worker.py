"""Background work for the app: loading a model and generating a completion.

Each job is a QObject moved to its own QThread; it talks to the app only
through signals, so the UI thread never waits on onnxruntime. Receivers must
be methods of objects living on the UI thread (not lambdas), so that Qt queues
the calls onto the UI thread. `Jobs` keeps each job and its thread alive until
the thread ends. Generation consumes the runtime's one path (Run.deltas, through
the public API): prompt ids -> prefill -> steps -> processors -> token -> text,
each delta with its tokens' TokenLogprobs, and checks a cancel flag at every
token. It runs in the controller's slot engine, whose slot keeps the document's
keys and values: Regenerate, or completing again at the same place, runs only
the tokens that changed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from gpt2onnx.runtime import Engine, GenerationConfig, Gpt2OnnxError, Model, Run, TokenLogprobs, load
from gpt2onnx.runtime.contract import TEXT_GENERATION

TOP_ALTERNATIVES = 5  # alternatives the token inspector shows


def session_threads() -> int:
    """onnxruntime threads for the app: all cores but one, which stays free for the UI
    thread (and the display server). With every core busy, the 5 ms event-loop timer of
    tests/bench_desktop.py fired up to 125 ms late on 2 cores; with one left free, the
    decode speed was the same."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class GenerationStats:
    """How a completion ended and how fast it ran."""

    finish_reason: str  # "eos", "length", "context", "stop" or "cancelled"
    new_tokens: int
    tokens_per_second: float
    tokens: list[TokenLogprobs] = field(default_factory=list)
    first_token_s: float = 0.0  # from the request to the first token's text
    reused_tokens: int = 0  # prompt tokens the engine's slot already held (not run again)


class Job(QObject):
    """A unit of background work; `start_job` or `Jobs.start` runs it on its own thread."""

    error = Signal(str)  # one line, for the window's message bar

    def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def job_thread(job: Job, done_signals: list) -> QThread:
    """A QThread, not started yet, that runs `job.run` and quits when any of `done_signals` fires."""
    thread = QThread()
    job.moveToThread(thread)
    thread.started.connect(job.run)
    for signal in [*done_signals, job.error]:
        # Direct: the job's own thread asks its loop to quit. Queued to the UI thread (the
        # thread object lives there), the quit would wait for the UI's event loop, so a
        # UI-thread thread.wait() (Stop-then-accept, close) would block until its timeout,
        # and a QThread collected after that timeout aborts the process.
        signal.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    return thread


def start_job(job: Job, done_signals: list) -> QThread:
    """Run `job.run` on a new QThread that quits when any of `done_signals` fires."""
    thread = job_thread(job, done_signals)
    thread.start()
    return thread


class _Running(QObject):
    """One started job and its thread, held until the thread has ended."""

    def __init__(self, jobs: Jobs, thread: QThread, job: Job):
        super().__init__()
        self.jobs, self.qthread, self.job = jobs, thread, job  # (not `thread`: QObject.thread() is this object's)
        thread.finished.connect(self._ended)  # before start: a quick job can't end unseen

    @Slot()
    def _ended(self) -> None:
        # `finished` is emitted just before the thread ends (isFinished() may still be
        # False here): wait out those last steps, then let the thread object go.
        self.qthread.wait()
        self.jobs._ended(self)


class Jobs(QObject):
    """Background jobs, each kept with its thread until the thread ends: a QThread
    destroyed while it runs aborts the whole process."""

    all_ended = Signal()  # the last running job's thread has ended

    def __init__(self):
        super().__init__()
        self._running: list[_Running] = []

    def start(self, job: Job, done_signals: list) -> QThread:
        """Run `job` on a new thread (see job_thread) and hold both until the thread ends."""
        thread = job_thread(job, done_signals)
        self._running.append(_Running(self, thread, job))
        thread.start()
        return thread

    def busy(self) -> bool:
        """Whether a job's thread is still running."""
        return bool(self._running)

    def threads(self) -> list[QThread]:
        return [running.qthread for running in self._running]

    def wait_all(self) -> None:
        """Wait for every thread to end (no timeout: cancel the jobs first)."""
        for running in list(self._running):
            running.qthread.quit()
            running.qthread.wait()

    def _ended(self, running: _Running) -> None:
        self._running.remove(running)
        if not self._running:
            self.all_ended.emit()


class ModelLoader(Job):
    """Loads an export folder (None: the shipped model) off the UI thread."""

    loaded = Signal(object, object)  # the Model, the folder it was asked for (None: shipped)

    def __init__(self, folder: str | None, provider: str):
        super().__init__()
        self.folder, self.provider = folder, provider

    @Slot()
    def run(self) -> None:
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a fallback is shown from model.provider_note
                model = load(self.folder, provider=self.provider, threads=session_threads())
            model.require_task(TEXT_GENERATION)  # a classifier export: its one-line refusal, shown like any load error
        except Gpt2OnnxError as e:
            self.error.emit(str(e))
        except Exception as e:  # noqa: BLE001 - any failure becomes a message, the app goes on
            self.error.emit(f"could not load the model: {type(e).__name__}: {e}")
        else:
            self.loaded.emit(model, self.folder)


class GenerationWorker(Job):
    """Completes one prompt; emits `token` per text delta, then `finished`, or `error`."""

    context = Signal(int, int)  # prompt tokens the model sees, tokens dropped from the left
    token = Signal(str, object)  # text delta, list[TokenLogprobs] made since the last delta
    beam = Signal(object)  # the best beam when beam search ends: [(text delta, list[TokenLogprobs])]
    finished = Signal(object)  # GenerationStats

    def __init__(self, model: Model, prompt: str, room: int, config: GenerationConfig, seed: int | None, engine: Engine | None = None):
        """Complete `prompt`, keeping only its last `room` tokens when it is longer; in `engine`
        (the controller's, whose slot keeps the last prompt for reuse) when given."""
        super().__init__()
        self.model, self.prompt, self.room, self.config, self.seed, self.engine = model, prompt, room, config, seed, engine
        self._cancel = threading.Event()
        self._run: Run | None = None

    def cancel(self) -> None:
        """Ask the worker to stop after the token it is making (any thread)."""
        self._cancel.set()
        if self._run is not None:
            self._run.cancel()  # also stops beam search, which yields no deltas until it ends

    @Slot()
    def run(self) -> None:
        try:
            self._generate()
        except Gpt2OnnxError as e:
            self.error.emit(str(e))
        except Exception as e:  # noqa: BLE001
            self.error.emit(f"generation failed: {type(e).__name__}: {e}")

    def _generate(self) -> None:
        started = time.perf_counter()
        ids = self.model.encode_prompt(self.prompt)  # tokenizing a long document takes a while: not on the UI thread
        dropped = max(0, len(ids) - self.room)
        self.context.emit(len(ids) - dropped, dropped)
        rows = max(self.config.num_beams, self.config.num_return_sequences)
        engine = self.engine if self.engine is not None and rows <= self.engine.slots else None  # beams need rows of their own
        run = self._run = self.model.run([self.prompt], self.config, seed=self.seed, engine=engine, prompt_ids=[ids[dropped:]])
        if self._cancel.is_set():
            run.cancel()
        tokens, pieces, first = [], [], None
        beams = self.config.num_beams > 1  # the best beam arrives at the end: sent in one signal, one edit
        for delta in run.deltas():
            if delta.row != 0:
                continue
            infos = delta.logprobs or []  # the runtime's own records; their text is spelled where shown
            tokens += infos
            if first is None and delta.text:
                first = time.perf_counter() - started
            if beams:
                pieces.append((delta.text, infos))
            else:
                self.token.emit(delta.text, infos)
            if self._cancel.is_set():
                run.cancel()  # the search ends at its next step; deltas() flushes what is held
        if pieces:
            self.beam.emit(pieces)
        completion = run.completions()[0]
        seconds = time.perf_counter() - started
        new = len(completion.token_ids)
        reason = "cancelled" if self._cancel.is_set() else completion.finish_reason or "length"
        stats = GenerationStats(reason, new, new / seconds if seconds > 0 else 0.0, tokens, first or seconds, completion.timing.reused_tokens)
        self.finished.emit(stats)
