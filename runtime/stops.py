"""Stop strings on a stream of text deltas: the text is cut exactly where the
first stop string begins, and text that might be the start of a stop string is
held back until it is known not to be; and the check the searches use to end
a sequence (or a beam) whose text contains one."""

from __future__ import annotations

from typing import Callable

import numpy as np


class StopMatcher:
    """Filters one row's text deltas for stop strings."""

    def __init__(self, stops: tuple[str, ...]):
        self._stops = stops
        self._held = ""  # emitted nowhere yet: the longest tail that begins some stop string
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Take new text; return what is safe to emit (up to a stop, if one completed)."""
        if not self._stops or self.stopped:
            return "" if self.stopped else delta
        text = self._held + delta
        hits = [i for i in (text.find(stop) for stop in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return text[: min(hits)]
        hold = max((k for stop in self._stops for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)
        self._held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of generation: the held-back text, which turned out not to be a stop."""
        held, self._held = self._held, ""
        return held


def stop_check(decode: Callable[[list[int]], str], stops: tuple[str, ...]) -> Callable[[np.ndarray], bool] | None:
    """The searches' view of stop strings: does the text of a sequence's last tokens contain one?
    Checked after every token, so only an occurrence that ends in the newest token can be new; a
    character is at most 4 bytes and a token at least 1, so the last 4 * len + 1 tokens hold it."""
    if not stops:
        return None
    tail = 4 * max(map(len, stops)) + 1

    def hit(ids: np.ndarray) -> bool:
        text = decode(ids[-tail:].tolist())
        return any(stop in text for stop in stops)

    return hit
