"""langchain-openai against gpt2onnx serve: `python langchain_openai_client.py CALL`.

GPT2ONNX_BASE_URL (http://HOST:PORT/v1) and GPT2ONNX_MODEL say where and what;
CALL is llm, llm-stream (langchain_openai.OpenAI, /v1/completions), chat or
chat-stream (ChatOpenAI, /v1/chat/completions).
"""

import os
import sys

from langchain_openai import ChatOpenAI, OpenAI

SERVER = dict(model=os.environ["GPT2ONNX_MODEL"], base_url=os.environ["GPT2ONNX_BASE_URL"], api_key="unused", max_tokens=20)


def llm():
    print(OpenAI(**SERVER).invoke("Once upon a time"))


def llm_stream():
    parts = list(OpenAI(**SERVER).stream("Once upon a time"))
    print("".join(parts), f"\n({len(parts)} chunks)")


def chat():
    print(ChatOpenAI(**SERVER).invoke("Tell me a fortune.").content)


def chat_stream():
    parts = [chunk.content for chunk in ChatOpenAI(**SERVER).stream("Tell me a fortune.")]
    print("".join(parts), f"\n({len(parts)} chunks)")


CALLS = {"llm": llm, "llm-stream": llm_stream, "chat": chat, "chat-stream": chat_stream}

if __name__ == "__main__":
    CALLS[sys.argv[1]]()
