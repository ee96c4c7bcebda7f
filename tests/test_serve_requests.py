"""What real clients send is accepted, and what is wrong is refused in one line: a real
`gpt2onnx serve` on 127.0.0.1 (the shipped model), the official `openai` client, httpx, and
guidance's own OpenAI model.

guidance's chat shape (text parts, `tools: null`, `top_logprobs`) and the other fields
clients send that ask for nothing the server lacks are accepted; real tools and image parts
get a clear 400. Chat without `max_tokens` runs to the end of the context (LangChain sends
none), and drops only the separator before the answer. OpenAI's own refusals
(`top_logprobs` without `logprobs`, `stream_options` without `stream`) are kept, and so are
the server's bounds on what one request may ask for. `GET /v1/models/{id}` answers the SDKs'
`models.retrieve`. An unexpected 500 is counted in /metrics.
"""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest
import uvicorn

from gpt2onnx.runtime import load
from gpt2onnx.serve.app import ServeOptions, create_app
from gpt2onnx.serve.protocol import MAX_STOP_CHARS, MAX_STOPS, MAX_TOKENS

from serve_helpers import free_port, server_fixture

MODEL = "gpt2onnx-default"
EOS = 50256
NO_EOS_OR_TURN = {str(EOS): -100, "198": -100, "628": -100, "48": -100}  # eos, "\n", "\n\n", "Q": no early end


server = server_fixture("--slots", "4", "--threads", "1")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def test_guidance_chat_shape_is_accepted(server):
    # What guidance 0.3.1 sends for a plain gen: text parts, tools null, logprobs with top_logprobs.
    body = {
        "model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "What is luck?"}]}],
        "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 3, "tools": None, "stream": True,
        "stream_options": {"include_usage": True}, "parallel_tool_calls": False, "response_format": {"type": "text"}, "tool_choice": "none",
    }
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and json.loads(lines[-2][6:])["usage"]["completion_tokens"] >= 1
    plain = {**body, "stream": False, "stream_options": None}
    parts = post(server, "/v1/chat/completions", plain).json()
    as_text = post(server, "/v1/chat/completions", {**plain, "messages": [{"role": "user", "content": "What is luck?"}]}).json()
    assert parts["choices"][0]["message"] == as_text["choices"][0]["message"]  # text parts are the same text


def test_guidance_gen_runs_against_the_server(server):
    import guidance  # the test extra installs it; imported here because it is slow to import
    from guidance import assistant, gen, user

    ok = 'gpt2onnx_requests_total{endpoint="/v1/chat/completions",status="200"}'
    before = server.metric(ok)
    lm = guidance.models.OpenAI(MODEL, base_url=f"{server.url}/v1", api_key="unused", echo=False)
    with user():
        lm += "What is luck?"
    with assistant():
        lm += gen("answer", max_tokens=8)  # guidance sends no temperature 0 (it drops falsy ones): the model samples
    assert isinstance(lm["answer"], str) and lm["answer"].strip()
    assert server.metric(ok) == before + 1  # one streamed call, answered


@pytest.mark.parametrize("change,message", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools are not supported"),
    ({"tool_choice": "auto"}, "tools are not supported"),
    ({"response_format": {"type": "json_object"}}, "response_format 'json_object' is not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}, "'image_url' content parts are not supported"),
    ({"top_logprobs": 2}, "top_logprobs needs logprobs: true"),
    ({"stream_options": {"include_usage": True}}, "stream_options is only allowed with stream: true"),
    ({"stop": ["x"] * (MAX_STOPS + 1)}, f"stop: List should have at most {MAX_STOPS} items"),
    ({"stop": "x" * (MAX_STOP_CHARS + 1)}, f"stop: String should have at most {MAX_STOP_CHARS} characters"),
    ({"max_tokens": MAX_TOKENS + 1}, f"max_tokens: Input should be less than or equal to {MAX_TOKENS}"),
    ({"max_tokens": 10**308, "context_overflow": "slide"}, "max_tokens: Input should be less than or equal to"),
    ({"logprobs": 1}, "logprobs: Input should be a valid boolean"),
    ({"logprobs": True, "top_logprobs": 15.0}, "top_logprobs: Input should be a valid integer"),
])
def test_chat_refusals_are_one_line(server, change, message):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **change}
    r = post(server, "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error["message"] and "\n" not in error["message"]


@pytest.mark.parametrize("change,message", [
    ({"prompt": [-1]}, "outside the vocabulary"),
    ({"prompt": [2**40]}, "outside the vocabulary"),
    ({"prompt": [[1], [2**64]], "echo": True}, "outside the vocabulary"),
    ({"logit_bias": {" 10": 1}}, "logit_bias keys must be token ids written in ASCII digits, got ' 10'"),
    ({"logit_bias": {"+10": 1}}, "got '+10'"),
    ({"logit_bias": {"١٠": 1}}, "got '١٠'"),
    ({"logit_bias": {"10": 101}}, "logit_bias values must be in [-100, 100]"),
    ({"echo": 0}, "echo: Input should be a valid boolean"),
    ({"logprobs": 15.0}, "logprobs: Input should be a valid integer"),
    ({"temperature": "1"}, "temperature: Input should be a valid number"),
    ({"max_tokens": 10**15, "context_overflow": "slide"}, "max_tokens: Input should be less than or equal to"),
    ({"bad_words_ids": [[t] for t in range(EOS)], "min_new_tokens": 2, "do_sample": True}, "bans every token but eos"),
    ({"bad_words_ids": [[1, 2]] * 300}, "bad_words_ids may hold at most 256 sequences"),
    ({"stream_options": {"include_usage": True}}, "stream_options is only allowed with stream: true"),
])
def test_completion_refusals_are_one_line(server, change, message):
    r = post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, **change})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error["message"] and "\n" not in error["message"]


def test_chat_without_max_tokens_runs_to_the_end_of_the_context(client, server):
    got = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell me a story."}], temperature=0, logit_bias=NO_EOS_OR_TURN)
    assert got.choices[0].finish_reason == "length"
    assert got.usage.completion_tokens == 256 - got.usage.prompt_tokens > 16  # n_positions is 256


def test_chat_drops_only_the_separator_before_the_answer(client):
    # Every token forced to " ": the answer is the spaces after the one that follows "A:".
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=10, temperature=0, logit_bias={"220": 100}, logprobs=True)
    plain = client.chat.completions.create(**kwargs)
    assert [e.token for e in plain.choices[0].logprobs.content] == [" "] * 10
    assert plain.choices[0].message.content == " " * 9
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs) if c.choices)
    assert streamed == " " * 9


def test_chat_logprobs_bytes_are_the_tokens_own(client):
    # Token 447 is the bytes e2 80 alone (the start of "—", "’", ...): its text is U+FFFD, its bytes are not.
    got = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0, logit_bias={"447": 100}, logprobs=True, top_logprobs=1)
    assert [(e.token, e.bytes) for e in got.choices[0].logprobs.content] == [("\ufffd", [0xE2, 0x80])] * 3


def test_models_retrieve(client):
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.models.retrieve("gpt-4")


def test_method_not_allowed_names_the_allowed_methods_and_openapi_is_served(server):
    r = httpx.get(f"{server.url}/v1/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/completions", "/v1/chat/completions", "/v1/models/{model_id}"} <= set(schema["paths"])


def test_a_vanishing_temperature_answers_greedily(client):
    greedy = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0, logit_bias={str(EOS): -100})
    tiny = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=1e-40, top_p=1, seed=1, logit_bias={str(EOS): -100}, extra_body={"top_k": 0})
    assert tiny.choices[0].text == greedy.choices[0].text and tiny.usage.completion_tokens == 12


def test_refusals_before_the_router_are_counted_too(server):
    # A 413 is answered before any route is matched: counted under "other", not lost.
    too_big = 'gpt2onnx_requests_total{endpoint="other",status="413"}'
    before = server.metric(too_big) if too_big in httpx.get(f"{server.url}/metrics").text else 0
    assert httpx.post(f"{server.url}/v1/completions", content=b"x" * (2 << 20), headers={"content-type": "application/json"}).status_code == 413
    assert server.metric(too_big) == before + 1


class _Broken:
    """The shipped model, except that checking prompts raises what no one expected."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def check_prompts(self, prompts):
        raise RuntimeError("an unexpected fault")


def test_an_unexpected_500_is_counted_in_metrics():
    port = free_port()
    app = create_app(ServeOptions(slots=1), model=_Broken(load(provider="cpu", threads=1)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # until it listens and the model is in
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.05)
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "Hi"})
        assert r.status_code == 500 and r.json()["error"]["message"] == "internal error: RuntimeError: an unexpected fault"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'gpt2onnx_requests_total{endpoint="/v1/completions",status="500"} 1.0' in metrics
    finally:
        server.should_exit = True
        thread.join(30)
