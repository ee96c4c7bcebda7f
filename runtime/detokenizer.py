"""Streaming detokenisation: token ids in, text deltas out.

GPT-2's byte-level BPE can split one UTF-8 character over several tokens, and a
token decoded alone then shows U+FFFD. We hold text back until the bytes so far
decode to whole characters, so the deltas never carry a broken character and
join to exactly the text of the whole sequence.

A sequence's text is what it adds to its prompt's: decoding starts from the
prompt's last token, as context. GPT-1's BPE marks word ends (`</w>`) and
SentencePiece-style decoders drop a first token's space, so new ids decoded alone
lose the space between the prompt and the first new word.
"""

from __future__ import annotations

from .tokenizer import Tokenizer

REPLACEMENT = "\ufffd"


class StreamDecoder:
    """Turns one sequence's growing token ids into text deltas.

    Decodes only a short window: ids from `_prefix` (the start of the last text
    already emitted) to the end, so each push costs O(window), not O(sequence).
    """

    def __init__(self, tokenizer: Tokenizer, context: list[int] | tuple[int, ...] = ()):
        """`context`: the prompt's last token(s); their text is never emitted."""
        self._tokenizer = tokenizer
        self._ids: list[int] = [int(i) for i in context]
        self._prefix = 0  # window start: ids before it are fully emitted
        self._read = len(self._ids)  # ids before it have been emitted as text (or are context)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ("" while a character is still partial)."""
        self._ids.append(int(token_id))
        emitted = self._tokenizer.decode(self._ids[self._prefix : self._read])
        text = self._tokenizer.decode(self._ids[self._prefix :])
        if len(text) <= len(emitted) or text.endswith(REPLACEMENT):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(emitted) :]

    def flush(self) -> str:
        """The text still held back at the end of the sequence (may contain U+FFFD)."""
        emitted = self._tokenizer.decode(self._ids[self._prefix : self._read])
        text = self._tokenizer.decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return text[len(emitted) :]
