"""Progress of the long export steps, on stderr, for people at a terminal only.

In a pipeline (--json, --quiet, or stderr not a TTY) it prints nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time


class Progress:
    """Times named steps; prints "[2/4] exporting ONNX ... done (3.1 s)" lines when enabled."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.seconds: dict[str, float] = {}  # step name -> seconds taken
        self._step = 0

    @classmethod
    def for_terminal(cls, total: int, quiet: bool) -> Progress:
        return cls(total, enabled=not quiet and sys.stderr.isatty())

    @contextlib.contextmanager
    def step(self, name: str, what: str):
        """Time the block as `name`, announcing it as `what`."""
        self._step += 1
        start = time.perf_counter()
        if self.enabled:
            print(f"[{self._step}/{self.total}] {what} ...", end="", file=sys.stderr, flush=True)
        try:
            yield
        except BaseException:
            if self.enabled:
                print(" failed", file=sys.stderr, flush=True)
            raise
        self.seconds[name] = round(time.perf_counter() - start, 3)
        if self.enabled:
            print(f" done ({self.seconds[name]:.1f} s)", file=sys.stderr, flush=True)
