"""Stop strings on a stream of text deltas: the text is cut exactly where the
first stop string begins, and text that might be the start of a stop string is
held back until it is known not to be; and the check the searches use to end
a sequence (or a beam) whose text contains one."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np


class StopMatcher:
    """Filters one row's text deltas for stop strings, in time linear in the text: each stop string
    keeps its Knuth-Morris-Pratt state (how much of it the text ends with), so a delta costs its
    length times the number of stops, whatever their lengths."""

    def __init__(self, stops: tuple[str, ...]):
        self._stops = stops
        self._fail = [_failure(stop) for stop in stops]
        self._matched = [0] * len(stops)  # per stop: the length of its longest prefix the text ends with
        self._held = ""  # emitted nowhere yet: the longest tail that begins some stop string
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Take new text; return what is safe to emit (up to a stop, if one completed)."""
        if not self._stops or self.stopped:
            return "" if self.stopped else delta
        text = self._held + delta
        first = None  # where the earliest stop string found begins, in text
        for k, (stop, fail) in enumerate(zip(self._stops, self._fail)):
            j = self._matched[k]
            for i, char in enumerate(delta, len(self._held)):
                while j and stop[j] != char:
                    j = fail[j - 1]
                if stop[j] == char:
                    j += 1
                if j == len(stop):  # a stop ends at i: the first for this stop, so its earliest start
                    first = i + 1 - j if first is None else min(first, i + 1 - j)
                    break
            self._matched[k] = j
        if first is not None:
            self.stopped = True
            self._held = ""
            return text[:first]
        hold = max(self._matched)
        self._held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of generation: the held-back text, which turned out not to be a stop."""
        held, self._held = self._held, ""
        self._matched = [0] * len(self._stops)
        return held


@lru_cache(maxsize=256)
def _failure(stop: str) -> tuple[int, ...]:
    """KMP's failure function: for each prefix stop[:i+1], the length of its longest proper prefix
    that is also its suffix (cached: every row of a request, and most requests, share their stops)."""
    fail, j = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while j and stop[i] != stop[j]:
            j = fail[j - 1]
        if stop[i] == stop[j]:
            j += 1
        fail[i] = j
    return tuple(fail)


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
