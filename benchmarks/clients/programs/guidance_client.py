"""guidance's OpenAI chat model against gpt2onnx serve: `python guidance_client.py CALL`.

GPT2ONNX_BASE_URL (http://HOST:PORT/v1) and GPT2ONNX_MODEL say where and what;
CALL is gen (a plain `gen`) or gen-stream (the same through `Model.stream()`, which
yields the model's state as the text grows). guidance always asks the server for a
stream: the two differ only in what the program sees.
"""

import os
import sys

from guidance import assistant, gen, guidance, models, user


def _model():
    lm = models.OpenAI(os.environ["GPT2ONNX_MODEL"], base_url=os.environ["GPT2ONNX_BASE_URL"], api_key="unused", echo=False)
    with user():
        lm += "Tell me a fortune."
    return lm


@guidance
def answer(lm):
    with assistant():
        lm += gen("answer", max_tokens=20)
    return lm


def plain():
    print((_model() + answer())["answer"])


def stream():
    # Model.stream() runs the program on another thread when iterated: the role block has to be
    # inside the program (a @guidance function), not around the loop.
    states = list(_model().stream() + answer())
    print(states[-1]["answer"], f"\n({len(states)} states)")


CALLS = {"gen": plain, "gen-stream": stream}

if __name__ == "__main__":
    CALLS[sys.argv[1]]()
