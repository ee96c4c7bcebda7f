"""Chat for a model without a chat template: messages as a plain Q/A transcript.

GPT-2 was never trained on chat turns, so /v1/chat/completions writes the
conversation the way small GPT-2 question-answering bots prompt it: an optional
system text, then one "Q: ..." line per user turn and one "A: ..." line per
assistant turn, ending with "A:" for the model to complete. Generation stops
where the model starts the next turn ("\\nQ:"), and the one space that
separates "A:" from the answer is dropped (spaces the model writes after it are
the answer's own):

    You are a helpful assistant.

    Q: What is the capital of France?
    A: Paris.
    Q: And of Italy?
    A:
"""

from __future__ import annotations

from collections.abc import Sequence

USER, ASSISTANT = "Q:", "A:"
TURN_STOPS = ("\nQ:",)  # the model writing the next user turn ends its answer


SEPARATOR = " "  # between "A:" and the answer's first word, as the transcript writes its turns


def transcript(messages: Sequence) -> str:
    """The prompt for a list of messages (objects with .role and .text())."""
    system = [m.text().strip() for m in messages if m.role in ("system", "developer")]
    lines = []
    for m in messages:
        if m.role == "user":
            lines.append(f"{USER}{SEPARATOR}{m.text().strip()}")
        elif m.role == "assistant":
            lines.append(f"{ASSISTANT}{SEPARATOR}{m.text().strip()}")
    head = "\n\n".join(system) + "\n\n" if system else ""
    return head + "\n".join(lines + [ASSISTANT])


def answer(text: str) -> str:
    """A whole answer's text, without the separator that opens it."""
    return AnswerText().feed(text)


class AnswerText:
    """Streams an answer's text without the separator that opens it (at most that one space)."""

    def __init__(self):
        self.started = False

    def feed(self, text: str) -> str:
        if not self.started and text:
            self.started = True
            text = text.removeprefix(SEPARATOR)
        return text
