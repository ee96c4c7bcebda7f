"""The API keys `gpt2onnx serve` accepts: --api-key (or $GPT2ONNX_API_KEY) and the
keys of --api-key-file, any of them.

A key file holds one key a line; blank lines and lines starting with # are
skipped. SIGHUP re-reads it (command.py installs the handler); a file that has
become unreadable or empty then keeps the keys in force and logs one line, so a
bad edit neither locks every client out nor lets everyone in.

A key must be printable ASCII without spaces: it travels in an HTTP header,
which carries ASCII (and loses leading and trailing spaces), so any other key
could never match.
"""

from __future__ import annotations

import hmac
import logging

from gpt2onnx.runtime.errors import UsageError

log = logging.getLogger("gpt2onnx.serve")
NEW_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_key(key: str, where: str) -> str:
    """The key, or UsageError naming `where` it came from if no client could ever send it."""
    if not key:
        raise UsageError(f"{where} is empty: give a key (make one with {NEW_KEY}), or leave it out to serve without one")
    if not all("!" <= c <= "~" for c in key):
        raise UsageError(f"{where} has a character that is not printable ASCII or is a space (an HTTP header could never carry it): make a key with {NEW_KEY}")
    return key


def read_file(path: str) -> tuple[str, ...]:
    """The keys listed in `path`; UsageError if it can't be read or lists none."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a BOM some editors write is not part of a key
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"cannot read --api-key-file {path} ({reason}): give a readable file with one key a line") from None
    keys = []
    for number, line in enumerate(lines, 1):
        key = line.strip()
        if key and not key.startswith("#"):
            keys.append(check_key(key, f"line {number} of --api-key-file {path}"))
    if not keys:
        raise UsageError(f"--api-key-file {path} lists no keys: put one key a line in it (blank lines and # comments are skipped)")
    return tuple(keys)


class ApiKeys:
    """The keys in force; `accepts` compares a token with each in constant time."""

    def __init__(self, key: str | None, path: str | None):
        self.key, self.path = key, path
        self._keys = self._encoded(read_file(path) if path else ())

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def _encoded(self, listed: tuple[str, ...]) -> tuple[bytes, ...]:
        return tuple(k.encode() for k in ([self.key] if self.key else []) + list(listed))

    def reload(self) -> None:
        """Re-read the key file (on SIGHUP); on failure keep the keys in force."""
        if self.path is None:
            return
        try:
            listed = read_file(self.path)
        except UsageError as e:
            log.warning("kept the API keys in force: %s", e)
            return
        self._keys = self._encoded(listed)  # one assignment: a request sees the old keys or the new
        log.info("re-read --api-key-file %s: %d keys", self.path, len(listed))

    def accepts(self, token: str) -> bool:
        sent = token.encode()
        matched = False
        for key in self._keys:  # every key, always: the time taken does not say which one matched
            matched |= hmac.compare_digest(sent, key)
        return matched
