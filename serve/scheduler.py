"""The scheduler: one thread that drives the slot engine for every request.

llama.cpp's server loop on gpt2onnx's engine. The asyncio front end submits
a Job and gets a Ticket; it never touches onnxruntime. The scheduler thread
starts each new job as a Run in the shared engine (it joins the running batch
at the next step), runs one engine step, then polls every run and hands its
text deltas to the request's asyncio queue (loop.call_soon_threadsafe). A
finished or cancelled request leaves at once and its slot is free for the
next. Requests beyond the slots wait in the engine's queue, up to
`max_queue`; past that, submit() refuses with QueueFull (HTTP 429).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from gpt2onnx.runtime import Delta, Model, SequenceResult, TokenLogprobs

from .metrics import Metrics
from .protocol import Job

log = logging.getLogger("gpt2onnx.serve")


class QueueFull(Exception):
    """Every slot is busy and the queue holds max_queue requests."""


@dataclass
class Tokens:
    deltas: list[Delta]


@dataclass
class Prompt:
    logprobs: list[list[TokenLogprobs]]  # per job prompt (with echo and logprobs), sent before any token


@dataclass
class Done:
    sequences: list[SequenceResult]  # one per choice, in OpenAI's index order


@dataclass
class Failed:
    error: Exception


@dataclass
class Ticket:
    """One request in flight: its job, where its events go, and its timing."""

    job: Job
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    run: object = None  # the Run, once the scheduler started it
    last_token: float | None = None
    cancel_seen: int | None = None  # the scheduler's step count when it first saw the cancel

    def cancel(self) -> None:
        """The client went away: stop at the next step (any thread)."""
        self.cancelled.set()
        run = self.run
        if run is not None:
            run.cancel()

    def send(self, event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Scheduler:
    """Owns the model's slot engine and the one thread that steps it."""

    def __init__(self, model: Model, slots: int, max_queue: int, metrics: Metrics, step_tokens: int | None = None):
        self.model, self.max_queue, self.metrics, self.step_tokens = model, max_queue, metrics, step_tokens
        self.engine = model.engine(slots, step_tokens=step_tokens)
        self.slots = slots
        self.in_flight = 0  # submitted and not yet done
        self.steps = 0  # engine steps run
        self._inbox: deque[Ticket] = deque()
        self._tickets: list[Ticket] = []
        self._wake = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="gpt2onnx-scheduler", daemon=True)
        metrics.slots.set(slots)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The thread is stepping (a health check: False means restart the server)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Cancel what is left and end the thread."""
        with self._wake:
            self._running = False
            self._wake.notify()
        self._thread.join()

    def submit(self, job: Job, loop: asyncio.AbstractEventLoop) -> Ticket:
        """Queue a job (any thread); QueueFull when the slots and the queue are full."""
        ticket = Ticket(job, loop)
        with self._wake:
            if not self._running:
                raise QueueFull("the server is shutting down")
            if self.in_flight >= self.slots + self.max_queue:
                raise QueueFull(f"all {self.slots} slots are busy and {self.max_queue} requests are queued: retry shortly")
            self.in_flight += 1
            self.metrics.running.set(self.in_flight)
            self._inbox.append(ticket)
            self._wake.notify()
        return ticket

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._running and not self._inbox and not self._tickets:
                    self._wake.wait()
                if not self._running:
                    break
                new = list(self._inbox)
                self._inbox.clear()
            for ticket in new:
                self._start(ticket)
            if self.engine.has_work():
                try:
                    self.engine.step()
                    self.steps += 1
                    self.metrics.steps.inc()
                except Exception as e:  # one bad step must not take the server down: fail its requests, start afresh
                    log.exception("engine step failed")
                    for ticket in self._tickets:
                        self._finish(ticket, Failed(e))
                    self._tickets = []
                    self.engine = self.model.engine(self.slots, step_tokens=self.step_tokens)
            self._poll()
        for ticket in self._tickets + list(self._inbox):
            self._finish(ticket, Failed(RuntimeError("the server shut down before this request finished")))

    def _start(self, ticket: Ticket) -> None:
        """Start a job's Run in the engine (its prefill happens at the next step)."""
        job = ticket.job
        if ticket.cancelled.is_set():
            self._finish(ticket, None)
            return
        try:
            if job.echo_logprobs is not None:
                ticket.send(Prompt([self.model.prompt_logprobs(ids, job.echo_logprobs) for ids in job.prompt_ids]))
            if job.config.max_new_tokens == 0:  # only the prompt's logprobs were asked for
                self._finish(ticket, Done([SequenceResult([], "", "length") for _ in range(len(job.prompt_ids) * job.config.num_return_sequences)]))
                return
            # The route checked the prompts before queueing (a 400 then, not a failed stream): once is enough.
            ticket.run = self.model.run([""] * len(job.prompt_ids), job.config, seed=job.seed, engine=self.engine, prompt_ids=job.prompt_ids, checked=True)
            if ticket.cancelled.is_set():
                ticket.run.cancel()
            self._tickets.append(ticket)
        except Exception as e:
            self._finish(ticket, Failed(e))

    def _poll(self) -> None:
        now = time.perf_counter()
        for ticket in list(self._tickets):
            if ticket.cancel_seen is None and ticket.cancelled.is_set():
                ticket.cancel_seen = self.steps
            try:
                deltas = ticket.run.poll()
            except Exception as e:
                log.exception("a request failed")
                self._tickets.remove(ticket)
                self._finish(ticket, Failed(e))
                continue
            if deltas:
                tokens = sum(len(d.token_ids) for d in deltas)
                self.metrics.generation_tokens.inc(tokens)
                if ticket.last_token is None:
                    self.metrics.ttft.observe(now - ticket.submitted)
                else:
                    self.metrics.itl.observe(now - ticket.last_token)
                ticket.last_token = now
                ticket.send(Tokens(deltas))
            if ticket.run.finished:
                self._tickets.remove(ticket)
                if ticket.cancel_seen is not None:
                    self.metrics.cancel_steps.observe(self.steps - ticket.cancel_seen)
                sequences = [s for c in ticket.run.completions() for s in c.sequences]
                self._finish(ticket, Done(sequences))
        self.metrics.busy_slots.set(self.slots - self.engine.cache.free_slots)
        self.metrics.queue_depth.set(len(self.engine.waiting) + len(self._inbox))

    def _finish(self, ticket: Ticket, event) -> None:
        if event is not None:
            ticket.send(event)
        with self._wake:
            self.in_flight -= 1
            self.metrics.running.set(self.in_flight)
