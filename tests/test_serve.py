"""`gpt2onnx serve` as clients meet it: a real server on 127.0.0.1 in a subprocess, the
official `openai` client, httpx for raw cases; the shipped model.

Greedy text equals `gpt2onnx generate`, echo+logprobs equal `gpt2onnx score`,
streams join to the plain answers, 32 concurrent streams equal the same
requests run one by one, every error row of the README, disconnects free their
slot within one step and leak nothing, a soak of 2,000 requests, SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from serve_helpers import Server, server_fixture

MODEL = "gpt2onnx-default"
CLI = [sys.executable, "-m", "gpt2onnx.cli"]


server = server_fixture("--slots", "8", "--threads", "1")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def streamed(stream) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            piece = choice.text if hasattr(choice, "text") else (choice.delta.content or "")
            texts[choice.index] = texts.get(choice.index, "") + piece
    return texts


def cli_json(*args: str) -> dict:
    done = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_greedy_completion_equals_the_cli(client):
    prompt = "Once upon a time"
    want = cli_json("generate", prompt, "--no-do-sample", "--max-new-tokens", "24")["results"][0]["sequences"][0]
    got = client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0)
    assert got.choices[0].text == want["text"]
    assert got.usage.completion_tokens == len(want["token_ids"])
    assert got.usage.prompt_tokens == 4


@pytest.mark.parametrize("settings", [dict(temperature=0), dict(temperature=0.9, seed=7, top_p=0.95, n=2)])
def test_streamed_completion_joins_to_the_plain_one(client, settings):
    plain = client.completions.create(model=MODEL, prompt="The secret of happiness is", max_tokens=30, **settings)
    joined = streamed(client.completions.create(model=MODEL, prompt="The secret of happiness is", max_tokens=30, stream=True, **settings))
    assert joined == {c.index: c.text for c in plain.choices}
    assert all(c.text for c in plain.choices)


def test_chat_streams_joins_and_stops_at_the_next_turn(client):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the meaning of life?"}]
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0, logprobs=True, top_logprobs=2)
    joined = streamed(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0, stream=True))
    content = plain.choices[0].message.content
    assert joined == {0: content}
    assert "\nQ:" not in content and plain.choices[0].message.role == "assistant"
    assert all(len(entry.top_logprobs) == 2 for entry in plain.choices[0].logprobs.content)


def test_echo_logprobs_equal_the_score_command(client):
    text = "A fortune cookie says: you will find what you seek."
    want = cli_json("score", text)["results"][0]["token_logprobs"]
    got = client.completions.create(model=MODEL, prompt=text, echo=True, logprobs=1, max_tokens=0).choices[0]
    assert got.text == text
    assert got.logprobs.token_logprobs[0] is None and got.logprobs.top_logprobs[0] is None
    assert max(abs(a - b) for a, b in zip(got.logprobs.token_logprobs[1:], want, strict=True)) < 1e-4
    assert "".join(got.logprobs.tokens) == text
    # As lm-evaluation-harness asks for a loglikelihood: token ids, echo, one new token.
    ids = httpx.post(f"{client.base_url}".replace("/v1/", "") + "/tokenize", json={"prompt": text}).json()["tokens"]
    again = client.completions.create(model=MODEL, prompt=ids, echo=True, logprobs=1, max_tokens=1, temperature=0).choices[0]
    assert again.logprobs.token_logprobs[1 : len(ids)] == pytest.approx(want, abs=1e-4)
    assert len(again.logprobs.tokens) == len(ids) + 1


def _request(i: int) -> dict:
    """32 different requests: greedy, sampling with seeds, penalties, stops, top_k."""
    prompt = ["Once upon a time", "The secret of happiness is", "Q: Why?\nA:", "In the beginning"][i % 4]
    settings = dict(model=MODEL, prompt=prompt, max_tokens=8 + i % 13)
    if i % 3 == 0:
        settings["temperature"] = 0
    else:
        settings.update(temperature=0.6 + 0.1 * (i % 5), seed=1000 + i, top_p=0.9)
    if i % 4 == 1:
        settings["frequency_penalty"] = 0.5
    if i % 5 == 2:
        settings["stop"] = ["\n"]
    if i % 7 == 3:
        settings["extra_body"] = {"top_k": 20}
    return settings


def test_32_concurrent_streams_equal_the_same_requests_one_by_one(client):
    alone = [client.completions.create(**_request(i)).choices[0].text for i in range(32)]
    start = threading.Barrier(32)

    def stream(i: int) -> str:
        start.wait()
        return streamed(client.completions.create(stream=True, **_request(i))).get(0, "")

    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(stream, range(32)))
    assert together == alone


def test_tokenize_and_detokenize_round_trip(server):
    ids = httpx.post(f"{server.url}/tokenize", json={"prompt": "Hello world"}).json()
    assert ids["count"] == len(ids["tokens"]) == 2 and ids["max_model_len"] == 256
    assert httpx.post(f"{server.url}/detokenize", json={"tokens": ids["tokens"]}).json() == {"prompt": "Hello world"}


def test_metrics_and_health(server, client):
    client.completions.create(model=MODEL, prompt="Hi", max_tokens=3, temperature=0)
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("gpt2onnx_requests_total", "gpt2onnx_prompt_tokens_total", "gpt2onnx_generation_tokens_total", "gpt2onnx_queue_depth",
                 "gpt2onnx_busy_slots", "gpt2onnx_time_to_first_token_seconds_bucket", "gpt2onnx_inter_token_latency_seconds_bucket"):
        assert name in text
    assert server.metric('gpt2onnx_requests_total{endpoint="/v1/completions",status="200"}') >= 1


BAD = [
    (b'{"prompt": "Hi",', 400, "not valid JSON"),
    (json.dumps({"prompt": "Hi", "temprature": 1}).encode(), 400, "unknown field 'temprature'"),
    (json.dumps({"prompt": "Hi", "temperature": 3}).encode(), 400, "temperature"),
    (json.dumps({"prompt": "Hi", "n": 0}).encode(), 400, "n:"),
    (json.dumps({"prompt": "word " * 300}).encode(), 400, "n_positions) is 256"),
    (json.dumps({"prompt": [99999]}).encode(), 400, "outside the vocabulary"),
    (json.dumps({"prompt": "Hi", "logit_bias": {"x": 1}}).encode(), 400, "logit_bias keys must be token ids"),
    (json.dumps({"prompt": "Hi", "model": "gpt-4"}).encode(), 404, "is not served here"),
    (json.dumps({"prompt": "x" * (2 << 20)}).encode(), 413, "over 1048576 bytes"),
]


@pytest.mark.parametrize("payload,status,message", BAD, ids=[b[2] for b in BAD])
def test_bad_requests_get_openai_errors(server, payload, status, message):
    r = httpx.post(f"{server.url}/v1/completions", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert message in error["message"] and "\n" not in error["message"] and set(error) == {"message", "type", "param", "code"}


@pytest.mark.slow  # 200 streams cut off, then a leak check (~6 s)
def test_disconnects_free_their_slot_within_one_step_and_leak_nothing(server):
    warm = server.rss_kb()
    for _ in range(200):
        with httpx.stream("POST", f"{server.url}/v1/completions", json={"prompt": "Once", "max_tokens": 200, "temperature": 0, "min_new_tokens": 200, "stream": True}) as r:
            next(r.iter_lines())  # the first chunk: the request holds a slot
    deadline = 200
    while server.metric("gpt2onnx_requests_running") and deadline:  # the last cancel lands within a step or two
        deadline -= 1
        httpx.get(f"{server.url}/health")
    assert server.metric("gpt2onnx_requests_running") == 0 and server.metric("gpt2onnx_busy_slots") == 0
    assert server.metric("gpt2onnx_queue_depth") == 0
    cancelled = server.metric("gpt2onnx_cancel_steps_count")
    assert cancelled >= 200 and server.metric('gpt2onnx_cancel_steps_bucket{le="1.0"}') == cancelled
    assert server.metric("gpt2onnx_generation_tokens_total") < 200 * 200 / 2  # they stopped early
    assert server.rss_kb() <= warm * 1.05


def test_api_key_queue_limit_and_graceful_sigterm():
    s = Server("--slots", "1", "--max-queue", "0", "--api-key", "sekret")
    try:
        url = f"{s.url}/v1/completions"
        assert httpx.post(url, json={"prompt": "Hi"}).status_code == 401
        assert httpx.post(url, json={"prompt": "Hi"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": "Bearer sekret"}
        long = {"prompt": "Once", "max_tokens": 150, "min_new_tokens": 150, "temperature": 0, "stream": True}
        with httpx.stream("POST", url, json=long, headers=auth) as r:
            lines = r.iter_lines()
            next(lines)  # it holds the only slot
            full = httpx.post(url, json={"prompt": "Hi"}, headers=auth)
            assert full.status_code == 429 and full.headers["Retry-After"] == "1"
            assert "slots are busy" in full.json()["error"]["message"]
            s.proc.send_signal(signal.SIGTERM)  # the running stream still finishes
            chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert s.proc.wait(60) == 0
    finally:
        s.stop()


def test_serve_refuses_unsafe_or_impossible_starts():
    public = subprocess.run([*CLI, "serve", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert public.returncode == 2 and "without an API key" in public.stderr and "Traceback" not in public.stderr
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run([*CLI, "serve", "--port", str(taken.getsockname()[1])], capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and "cannot listen on 127.0.0.1" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    missing = subprocess.run([*CLI, "serve", "--model", "/no/such/folder"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such model folder" in missing.stderr


@pytest.mark.slow  # 2,000 requests (~16 s)
def test_soak_2000_requests(server):
    http = httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=16))
    bodies = [
        ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}),
        ("/v1/completions", {"prompt": ["A", "B"], "max_tokens": 3, "temperature": 0.8, "seed": 1}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "stream": True}),
    ]

    def one(i: int) -> int:
        path, body = bodies[i % len(bodies)]
        return http.post(path, json=body).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, range(200))) == {200}  # warm-up
        warm = server.rss_kb()
        statuses = list(pool.map(one, range(2000)))
    assert statuses.count(200) == 2000
    assert server.rss_kb() <= warm * 1.05
