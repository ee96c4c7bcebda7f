"""What POST /v1/completions and /v1/chat/completions do (routes.py registers them):
request -> Job -> scheduler -> events -> OpenAI's response, whole or as server-sent events.

Everything that can be wrong with a request is checked before it is queued,
so a stream never starts for a request that would fail. Tokenizing, whose time
grows with the prompt, runs off the event loop. A client that goes away
cancels its request at once: a stream's task is cancelled by Starlette, and a
plain request's watcher hears ASGI's http.disconnect while it waits.
"""

from __future__ import annotations

import asyncio
import functools
import json

from fastapi import Request
from fastapi.responses import StreamingResponse

from gpt2onnx.runtime import UsageError

from . import chat, errors, responses
from .errors import ApiError
from .protocol import ChatRequest, CompletionRequest, Job, check_request, choices, settings
from .scheduler import Done, Failed, Prompt, Ticket, Tokens

GONE = object()  # put on a plain request's events when its client disconnects


async def completions(state, body: CompletionRequest, request: Request):
    """POST /v1/completions."""
    model, _ = state.ready()
    state.check_model(body.model)
    if body.suffix:
        raise ApiError(400, "suffix is not supported: GPT-2 completes text, it does not insert", param="suffix")
    if body.best_of is not None and body.best_of != body.n:
        raise ApiError(400, "best_of must equal n (or be left out): gpt2onnx returns every sequence it makes", param="best_of")
    check_request(body)
    prompts, texts = await off_loop(_completion_prompts, model, body.prompt, body.echo)
    echo_logprobs = body.logprobs if body.echo and body.logprobs is not None else None
    job, repeat = _job(state, model, body, prompts, settings(body, model.generation_config, body.max_tokens, body.logprobs), echo_logprobs)
    ticket = _submit(state, job, prompts)
    group = job.config.num_return_sequences
    echo_texts = [texts[i // (group * repeat)] if body.echo else "" for i in range(len(prompts) * repeat * group)]
    request_id = responses.new_id("cmpl")
    if body.stream:
        return _sse(_stream_completion(state, ticket, body, request_id, echo_texts, prompts, repeat, model))
    done, prompt_logprobs = await _wait(ticket, request)
    out = []
    for i, sequence in enumerate(done.sequences):
        logprobs = None
        if body.logprobs is not None:
            log = responses.CompletionLogprobs(model.tokenizer.token_text)
            if body.echo:
                _add_prompt(log, prompts[i // (group * repeat)], prompt_logprobs[i // group] if prompt_logprobs else None)
            for record in _shown(sequence.logprobs, job.config.eos_token_ids):
                log.add(record.token_id, record)
            logprobs = log.take()
        out.append({"text": echo_texts[i] + sequence.text, "index": i, "logprobs": logprobs, "finish_reason": responses.FINISH[sequence.finish_reason]})
    result = responses.envelope("text_completion", request_id, state.options.model_id, out)
    result["usage"] = responses.usage(sum(map(len, prompts)), sum(len(s.token_ids) for s in done.sequences))
    return result


async def chat_completions(state, body: ChatRequest, request: Request):
    """POST /v1/chat/completions."""
    model, _ = state.ready()
    state.check_model(body.model)
    check_request(body)
    prompts = [await off_loop(_chat_prompt, model, body.messages)]
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    top = (body.top_logprobs or 0) if body.logprobs else None
    room = max(model.info.n_positions - len(prompts[0]), 1)  # no max_tokens: what is left of the context
    job, _ = _job(state, model, body, prompts, settings(body, model.generation_config, max_tokens, top, chat.TURN_STOPS, room), None)
    ticket = _submit(state, job, prompts)
    request_id = responses.new_id("chatcmpl")
    if body.stream:
        return _sse(_stream_chat(state, ticket, body, request_id, model))
    done, _ = await _wait(ticket, request)
    out = []
    for i, sequence in enumerate(done.sequences):
        logprobs = responses.chat_logprobs(model.tokenizer, _shown(sequence.logprobs, job.config.eos_token_ids)) if body.logprobs else None
        message = {"role": "assistant", "content": chat.answer(sequence.text)}
        out.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": responses.FINISH[sequence.finish_reason]})
    result = responses.envelope("chat.completion", request_id, state.options.model_id, out)
    result["usage"] = responses.usage(len(prompts[0]), sum(len(s.token_ids) for s in done.sequences))
    return result


def _is_texts(prompt) -> bool:
    return isinstance(prompt, list) and bool(prompt) and all(isinstance(p, str) for p in prompt)


async def off_loop(function, *args):
    """Run `function(*args)` on a worker thread: work that grows with the input (tokenizing a 1 MiB
    prompt takes half a second) must not stall every other client on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args))


def _prompt_ids(model, prompt) -> list[list[int]]:
    """OpenAI's four prompt forms -> one list of ids per prompt."""
    if isinstance(prompt, str):
        return [model.encode_prompt(prompt)]
    if not prompt:
        raise ApiError(400, "prompt is empty: give a string, a list of strings, token ids or lists of token ids", param="prompt")
    if _is_texts(prompt):
        return [model.encode_prompt(p) for p in prompt]
    if all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    if all(isinstance(p, list) and p for p in prompt):
        return [list(p) for p in prompt]
    raise ApiError(400, "prompt must be a string, a list of strings, token ids or non-empty lists of token ids", param="prompt")


def _completion_prompts(model, prompt, echo: bool) -> tuple[list[list[int]], list[str]]:
    """The prompts' ids, checked (empty, ids outside the vocabulary, longer than the context: 400),
    and with echo their texts (token ids are decoded only once they are known to be the model's)."""
    prompts = _prompt_ids(model, prompt)
    model.check_prompts(prompts)
    if isinstance(prompt, str):
        return prompts, [prompt]
    if _is_texts(prompt):
        return prompts, list(prompt)
    return prompts, [model.tokenizer.decode(ids, skip_special_tokens=False) if echo else "" for ids in prompts]


def _chat_prompt(model, messages) -> list[int]:
    ids = model.encode_prompt(chat.transcript(messages))
    model.check_prompts([ids])
    return ids


def _job(state, model, body, prompts: list[list[int]], changes: dict, echo_logprobs: int | None) -> tuple[Job, int]:
    """The Job for a request, checked now: settings and slots (its prompts were checked as they were made)."""
    config, repeat = choices(model.config(**changes), body.n)
    rows = len(prompts) * repeat * max(config.num_return_sequences, config.num_beams)
    if rows > state.options.slots:
        raise ApiError(400, f"this request needs {rows} slots (prompts x n or beams) but the server has {state.options.slots}: send fewer prompts or start the server with more --slots")
    return Job([ids for ids in prompts for _ in range(repeat)], config, body.seed, echo_logprobs), repeat


def _submit(state, job: Job, prompts: list[list[int]]) -> Ticket:
    ticket = state.scheduler.submit(job, asyncio.get_running_loop())
    state.metrics.prompt_tokens.inc(sum(map(len, prompts)))
    return ticket


async def _wait(ticket: Ticket, request: Request) -> tuple[Done, list | None]:
    """The request's result (and its prompts' logprobs), cancelling it the moment the client leaves."""
    watcher = asyncio.create_task(_watch(request, ticket))
    prompt_logprobs = None
    try:
        while True:
            event = await ticket.events.get()
            if event is GONE:
                raise ApiError(499, "the client closed the connection")
            if isinstance(event, Prompt):
                prompt_logprobs = event.logprobs
            elif isinstance(event, Done):
                return event, prompt_logprobs
            elif isinstance(event, Failed):
                raise _api_error(event.error)
    except asyncio.CancelledError:
        ticket.cancel()
        raise
    finally:
        watcher.cancel()


async def _watch(request: Request, ticket: Ticket) -> None:
    """Wait for ASGI's http.disconnect (the body was read: nothing else comes), then cancel the request
    at the scheduler's next step and wake its waiter."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    ticket.cancel()
    ticket.events.put_nowait(GONE)


def _api_error(error: Exception) -> ApiError:
    """What a failure in the scheduler tells the client."""
    if isinstance(error, UsageError):
        return ApiError(400, str(error).splitlines()[0])
    return ApiError(500, f"generation failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", "server_error")


def _shown(records, eos: tuple[int, ...]) -> list:
    """The token records a response lists: all but the eos that ended a sequence (it has no text).
    The one rule for plain and streamed responses."""
    return [r for r in records or () if r.token_id not in eos]


def _add_prompt(log, ids: list[int], records) -> None:
    log.add(ids[0], None)  # the first token has nothing before it
    for token, record in zip(ids[1:], records or [None] * (len(ids) - 1)):
        log.add(token, record)


def _failure(event: Failed) -> str:
    """A failed request's last server-sent event: OpenAI's error object."""
    e = _api_error(event.error)
    return _data(errors.body(e.status, e.message, e.kind, e.param, e.code))


def _sse(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _data(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _events(ticket: Ticket):
    """The ticket's scheduler events until it is done (Done) or failed (Failed, last); cancels it if
    the stream is dropped."""
    finished = False
    try:
        while True:
            event = await ticket.events.get()
            yield event
            if isinstance(event, (Done, Failed)):
                finished = True
                return
    finally:
        if not finished:  # the client went away (Starlette cancelled the stream): free the slot
            ticket.cancel()


async def _stream_completion(state, ticket, body: CompletionRequest, request_id, echo_texts, prompts, repeat, model):
    group = ticket.job.config.num_return_sequences
    logs = [responses.CompletionLogprobs(model.tokenizer.token_text) for _ in echo_texts] if body.logprobs is not None else None

    def chunk(index: int, text: str, finish=None) -> str:
        choice = {"text": text, "index": index, "logprobs": logs[index].take() if logs and finish is None else None, "finish_reason": finish}
        return _data(responses.envelope("text_completion", request_id, state.options.model_id, [choice]))

    echoed = False
    async for event in _events(ticket):
        if isinstance(event, Failed):
            yield _failure(event)
            return
        if body.echo and not echoed:
            echoed = True
            for i, text in enumerate(echo_texts):
                if logs:
                    records = event.logprobs[i // group] if isinstance(event, Prompt) else None
                    _add_prompt(logs[i], prompts[i // (group * repeat)], records)
                yield chunk(i, text)
            if isinstance(event, Prompt):
                continue
        if isinstance(event, Tokens):
            for delta in event.deltas:
                for record in _shown(delta.logprobs, ticket.job.config.eos_token_ids) if logs else ():
                    logs[delta.row].add(record.token_id, record)
                yield chunk(delta.row, delta.text)
        elif isinstance(event, Done):
            for i, sequence in enumerate(event.sequences):
                yield chunk(i, "", responses.FINISH[sequence.finish_reason])
            if body.stream_options and body.stream_options.include_usage:
                usage = responses.envelope("text_completion", request_id, state.options.model_id, [])
                usage["usage"] = responses.usage(sum(map(len, prompts)), sum(len(s.token_ids) for s in event.sequences))
                yield _data(usage)
            yield "data: [DONE]\n\n"


async def _stream_chat(state, ticket, body: ChatRequest, request_id, model):
    rows = ticket.job.config.num_return_sequences * len(ticket.job.prompt_ids)
    answers = [chat.AnswerText() for _ in range(rows)]
    eos = ticket.job.config.eos_token_ids

    def chunk(index: int, delta: dict, finish=None, logprobs=None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return _data(responses.envelope("chat.completion.chunk", request_id, state.options.model_id, [choice]))

    for i in range(rows):
        yield chunk(i, {"role": "assistant", "content": ""})
    async for event in _events(ticket):
        if isinstance(event, Failed):
            yield _failure(event)
            return
        if isinstance(event, Tokens):
            for delta in event.deltas:
                logprobs = responses.chat_logprobs(model.tokenizer, _shown(delta.logprobs, eos)) if body.logprobs else None
                yield chunk(delta.row, {"content": answers[delta.row].feed(delta.text)}, None, logprobs)
        elif isinstance(event, Done):
            for i, sequence in enumerate(event.sequences):
                yield chunk(i, {}, responses.FINISH[sequence.finish_reason])
            if body.stream_options and body.stream_options.include_usage:
                usage = responses.envelope("chat.completion.chunk", request_id, state.options.model_id, [])
                usage["usage"] = responses.usage(len(ticket.job.prompt_ids[0]), sum(len(s.token_ids) for s in event.sequences))
                yield _data(usage)
            yield "data: [DONE]\n\n"
