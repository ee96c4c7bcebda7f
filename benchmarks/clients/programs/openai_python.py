"""The official openai Python SDK against gpt2onnx serve: `python openai_python.py CALL`.

GPT2ONNX_BASE_URL (http://HOST:PORT/v1) and GPT2ONNX_MODEL say where and what;
CALL is completion, completion-stream, chat or chat-stream.
"""

import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ["GPT2ONNX_BASE_URL"], api_key="unused")
MODEL = os.environ["GPT2ONNX_MODEL"]
MESSAGES = [{"role": "user", "content": "Tell me a fortune."}]


def completion():
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=20)
    print(r.choices[0].text)


def completion_stream():
    parts = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=20, stream=True) if c.choices]
    print("".join(parts), f"\n({len(parts)} chunks)")


def chat():
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    print(r.choices[0].message.content)


def chat_stream():
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=20, stream=True) if c.choices]
    print("".join(parts), f"\n({len(parts)} chunks)")


CALLS = {"completion": completion, "completion-stream": completion_stream, "chat": chat, "chat-stream": chat_stream}

if __name__ == "__main__":
    CALLS[sys.argv[1]]()
