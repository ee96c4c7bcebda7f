"""GPT-2's byte-level BPE through Hugging Face `tokenizers`, loaded from tokenizer.json.

Text in must be valid Unicode: a str with a lone surrogate ("\\ud800", or the
"\\udcff" Python makes of an undecodable byte with errors="surrogateescape")
has no UTF-8 bytes to tokenize, so it is refused with a UsageError naming the
position, as transformers' tokenizers refuse it (with a TypeError).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer

from .errors import ModelLoadError, UsageError


def check_unicode(text: str, what: str = "the text") -> None:
    """Refuse a str that UTF-8 can't encode (a lone surrogate), naming where it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UsageError(
            f"{what} is not valid Unicode: a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}; "
            "fix the text, or decode its bytes with errors='replace'"
        ) from None


class Tokenizer:
    """Text <-> token ids for one export folder."""

    def __init__(self, path: Path):
        try:
            self._tok = _HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for bad files
            raise ModelLoadError(f"cannot read the tokenizer {path}: {str(e).splitlines()[0]} (re-export the model)") from None

    @property
    def vocab_size(self) -> int:
        """Token ids in use, added tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, as `AutoTokenizer(text).input_ids` gives them."""
        if not isinstance(text, str):
            raise UsageError(f"text to tokenize must be a str, got {type(text).__name__}")
        check_unicode(text)
        # encode_batch lets go of the GIL while it works (encode holds it: a 1 MiB text stalled every
        # other thread, a server's event loop and scheduler too, for 0.5 s); one text costs the same.
        return self._tok.encode_batch([text])[0].ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; bytes that don't form whole UTF-8 characters become U+FFFD."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """One token's text on its own, special tokens included."""
        return self._tok.decode([int(token_id)], skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """One token's own bytes: with byte-level BPE (GPT-2's) a token can hold part of a UTF-8
        character, whose text alone is U+FFFD, so its bytes are read from the vocabulary itself."""
        piece = self._tok.id_to_token(int(token_id))
        if type(self._tok.decoder).__name__ == "ByteLevel" and piece is not None and all(c in _BYTE_OF for c in piece):
            return bytes(_BYTE_OF[c] for c in piece)
        return self.token_text(token_id).encode("utf-8")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted: the printable character that stands for each byte in
    a byte-level BPE vocabulary -> that byte."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    return {chr(b): b for b in kept} | {chr(256 + i): b for i, b in enumerate(moved)}


_BYTE_OF = _byte_level_alphabet()
