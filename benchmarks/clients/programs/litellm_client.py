"""litellm against gpt2onnx serve: `python litellm_client.py CALL`.

GPT2ONNX_BASE_URL (http://HOST:PORT/v1) and GPT2ONNX_MODEL say where and what;
CALL is chat, chat-stream (litellm.completion, provider openai/), text or
text-stream (litellm.text_completion, provider text-completion-openai/).
"""

import os
import sys

import litellm

BASE, MODEL = os.environ["GPT2ONNX_BASE_URL"], os.environ["GPT2ONNX_MODEL"]
MESSAGES = [{"role": "user", "content": "Tell me a fortune."}]


def chat():
    r = litellm.completion(model=f"openai/{MODEL}", api_base=BASE, api_key="unused", messages=MESSAGES, max_tokens=20)
    print(r.choices[0].message.content)


def chat_stream():
    stream = litellm.completion(model=f"openai/{MODEL}", api_base=BASE, api_key="unused", messages=MESSAGES, max_tokens=20, stream=True)
    parts = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    print("".join(parts), f"\n({len(parts)} chunks)")


def text():
    r = litellm.text_completion(model=f"text-completion-openai/{MODEL}", api_base=BASE, api_key="unused", prompt="Once upon a time", max_tokens=20)
    print(r.choices[0].text)


def text_stream():
    stream = litellm.text_completion(model=f"text-completion-openai/{MODEL}", api_base=BASE, api_key="unused",
                                     prompt="Once upon a time", max_tokens=20, stream=True)
    parts = [chunk.choices[0].text or "" for chunk in stream if chunk.choices]
    print("".join(parts), f"\n({len(parts)} chunks)")


CALLS = {"chat": chat, "chat-stream": chat_stream, "text": text, "text-stream": text_stream}

if __name__ == "__main__":
    CALLS[sys.argv[1]]()
