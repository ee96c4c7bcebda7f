"""No request can stall or kill another: a real `gpt2onnx serve` on 127.0.0.1 under the attacks
a hostile client made, while a victim stream that started before them runs in a process of its
own. The victim must finish with its full text (the runtime's own greedy tokens) and `[DONE]`,
and its longest gap between two chunks must stay under a second.

The attacks: plain requests that ask for tens of thousands of tokens and are abandoned after a
second (each one's slot is free a step after its client goes; a killed client process too);
requests that asked for 7 PiB of memory, banned every token or sent ids past int32 (400, and
no one else fails); sixteen 256-character stop strings; slowloris sockets and half-sent
requests; 1 MiB prompts to tokenize.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gpt2onnx.runtime import load
from gpt2onnx.serve.protocol import MAX_STOP_CHARS, MAX_STOPS, MAX_TOKENS

import attack_helpers
from serve_helpers import server_fixture

EOS = 50256
VICTIM = {"prompt": "Once upon a time", "max_tokens": 12000, "min_new_tokens": 12000, "temperature": 0, "context_overflow": "slide", "stream": True}
LONG = {"prompt": "Once", "max_tokens": MAX_TOKENS, "min_new_tokens": MAX_TOKENS, "temperature": 0, "context_overflow": "slide"}

# The victim: its own process, so that the attacks' threads here can't delay its reading.
VICTIM_CLIENT = textwrap.dedent("""
    import json, sys, time
    import httpx
    url, body = sys.argv[1], json.loads(sys.argv[2])
    text, gaps, last, done, finish = "", [], None, False, None
    with httpx.stream("POST", url, json=body, timeout=120) as r:
        print(json.dumps({"started": r.status_code}), flush=True)
        for line in r.iter_lines():
            now = time.monotonic()
            if last is not None:
                gaps.append(now - last)
            last = now
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                choice = json.loads(line[6:])["choices"][0]
                text += choice["text"]
                finish = choice["finish_reason"] or finish
    print(json.dumps({"text": text, "done": done, "finish": finish, "max_gap": max(gaps), "ended": time.time()}), flush=True)
""")


server = server_fixture("--slots", "4", "--threads", "1", "--read-timeout", "2", "--max-connections", "400")


def wait_for_idle(server, busy: int, seconds: float = 10) -> float:
    """Seconds until only `busy` slots are busy and nothing waits (polling /metrics)."""
    start = time.monotonic()
    while server.metric("gpt2onnx_busy_slots") != busy or server.metric("gpt2onnx_queue_depth") != 0:
        assert time.monotonic() - start < seconds, f"slots still busy after {seconds} s"
        time.sleep(0.02)  # polling a condition, not waiting for time to pass
    return time.monotonic() - start


def abandoned_requests(server, n: int) -> None:
    """Item 8: n plain requests for MAX_TOKENS tokens each, abandoned by their clients after 1 s."""
    def one(_):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/completions", json=LONG, timeout=httpx.Timeout(30, read=1))

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, range(n)))


def refused(server, path: str, body: dict) -> str:
    r = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert r.status_code == 400, r.text
    return r.json()["error"]["message"]


@pytest.mark.slow  # every attack in turn against a live stream (~30 s)
def test_a_victim_stream_survives_every_attack(server):
    victim = subprocess.Popen([sys.executable, "-c", VICTIM_CLIENT, f"{server.url}/v1/completions", json.dumps(VICTIM)], stdout=subprocess.PIPE, text=True)
    assert json.loads(victim.stdout.readline()) == {"started": 200}
    cancels = server.metric("gpt2onnx_cancel_steps_count")

    # 8: abandoned giants free their slots a step after their clients go; the server answers others.
    abandoned_requests(server, 4)
    wait_for_idle(server, busy=1)
    assert server.metric("gpt2onnx_cancel_steps_count") == cancels + 4
    assert server.metric('gpt2onnx_cancel_steps_bucket{le="1.0"}') == server.metric("gpt2onnx_cancel_steps_count")
    ok = httpx.post(f"{server.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 4}, timeout=10)
    assert ok.status_code == 200

    # 9 and 11: what would have failed a whole step, or the server, is refused before it is queued.
    assert "less than or equal to" in refused(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 10**15, "context_overflow": "slide"})
    assert "less than or equal to" in refused(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 10**308, "context_overflow": "slide"})
    everything = [[t] for t in range(EOS)]
    assert "bans every token" in refused(server, "/v1/completions", {"prompt": "Hi", "bad_words_ids": everything, "min_new_tokens": 3, "do_sample": True})
    for ids in ([-1], [2**31], [2**40], [2**64]):
        assert "outside the vocabulary" in refused(server, "/v1/completions", {"prompt": ids})

    # 10: the most stop strings a request may send, as long as they may be, on a long answer.
    stops = ["q" * (MAX_STOP_CHARS - 1) + str(i % 10) for i in range(MAX_STOPS)]
    stopped = httpx.post(f"{server.url}/v1/completions", json={"prompt": "Once", "max_tokens": 300, "min_new_tokens": 300, "stop": stops, "stream": True}, timeout=60)
    assert stopped.status_code == 200 and stopped.text.endswith("data: [DONE]\n\n")
    assert "at most 256 characters" in refused(server, "/v1/completions", {"prompt": "Hi", "stop": "x" * 100_000})

    # 13: slowloris sockets and half-sent requests hold no slot and are closed by the read timeout.
    sockets = attack_helpers.slowloris("127.0.0.1", server.port, 200)
    half = attack_helpers.half_sent("127.0.0.1", server.port, 100)
    assert httpx.post(f"{server.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 4}, timeout=10).status_code == 200

    # 14: 1 MiB texts to tokenize, which once held the event loop for half a second each.
    big = "word " * 200_000
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda path: httpx.post(f"{server.url}{path}", json={"prompt": big}, timeout=60), ["/v1/completions", "/tokenize"] * 2))
    assert [a.status_code for a in answers] == [400, 200] * 2
    assert "n_positions) is 256" in answers[0].json()["error"]["message"] and answers[1].json()["count"] == 200_001  # "word" then " word" each time, and the last " "
    attacks_ended = time.time()
    for s in sockets + half:
        s.close()

    result = json.loads(victim.stdout.readline())
    assert victim.wait(60) == 0
    want = load(provider="cpu", threads=1).generate(VICTIM["prompt"], do_sample=False, max_new_tokens=12000, min_new_tokens=12000, context_overflow="slide")
    assert result["ended"] > attacks_ended, "the victim ended before the attacks did: make it longer"
    assert result["done"] and result["finish"] == "length"
    assert result["text"] == want.text
    print(f"victim: {len(want.token_ids)} tokens, longest gap {result['max_gap'] * 1000:.0f} ms")
    assert result["max_gap"] < 1.0, f"the victim's longest gap was {result['max_gap']:.2f} s"


def test_plain_requests_are_cancelled_when_their_client_times_out_or_dies(server):
    # A client that gives up mid-generation (it read nothing: a plain request answers at the end).
    wait_for_idle(server, busy=0)
    cancels = server.metric("gpt2onnx_cancel_steps_count")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=LONG, timeout=httpx.Timeout(30, read=0.3))
    wait_for_idle(server, busy=0)
    assert server.metric("gpt2onnx_cancel_steps_count") == cancels + 1
    # A client process killed while it waits.
    dying = subprocess.Popen([sys.executable, "-c", f"import httpx; httpx.post({server.url + '/v1/completions'!r}, json={LONG!r}, timeout=60)"])
    start = time.monotonic()
    while server.metric("gpt2onnx_busy_slots") == 0:  # its request holds a slot
        assert time.monotonic() - start < 30 and dying.poll() is None
        time.sleep(0.02)
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    wait_for_idle(server, busy=0)
    assert server.metric("gpt2onnx_cancel_steps_count") == cancels + 2
    assert server.metric('gpt2onnx_cancel_steps_bucket{le="1.0"}') == server.metric("gpt2onnx_cancel_steps_count")
    assert server.metric("gpt2onnx_requests_running") == 0
