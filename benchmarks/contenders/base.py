"""The contender interface: what one runtime under test provides (Contender),
and what its generation call hands back (Trace).

A contender has two lives. In the parent process its class methods build its
model from the random checkpoint (cached in --work) and say how many weight
bytes a token reads. In its own process (one per repeat) an instance imports
its packages, loads the model and runs the workload through `generate`; see
benchmarks/workload.py for the calls and their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..plan import Plan


@dataclass(frozen=True)
class Trace:
    """One generation call: when it started and ended, and when each step's tokens arrived.

    Every time is time.perf_counter(). A step's time is when its tokens reached
    the caller: for a batch, when the last row's token of that step did. A
    contender that only hands tokens over at the end (beam search) gives
    stamps=[end]: only end - start is used then.
    """

    start: float  # before anything of the call ran (prefill included)
    stamps: list[float]  # [steps]: stamps[0] is the first new token, stamps[-1] the last
    end: float  # the call has returned its results
    tokens: list[list[int]]  # [sequences][new]: new ids per returned sequence (beams: the best one)
    inside: list[float] = field(default_factory=list)  # [steps]: gpt2onnx: session.run_seconds at each stamp

    @property
    def ttft_s(self) -> float:
        return self.stamps[0] - self.start

    @property
    def decode_s(self) -> float:
        return self.stamps[-1] - self.stamps[0]

    def steps_ms(self) -> list[float]:
        return [1e3 * (b - a) for a, b in zip(self.stamps, self.stamps[1:])]


class Contender:
    """A runtime under test. Subclass it, set the class attributes, define the methods, and add
    the class to benchmarks/contenders/__init__.py's REGISTRY.

    Heavy packages are imported inside the methods, never at module level: every
    contender process imports every contender module (the registry), and the
    gpt2onnx processes must never import torch.
    """

    name: str = ""  # its key in speed.json and in --contenders
    label: str = ""  # its column heading in speed.md and the plot's legend
    ours: bool = False  # gpt2onnx: reports OURS_ONLY figures and writes the int8-agreement side files
    builds: bool = True  # False: runs the checkpoint folder as it is (no build, no cache entry)

    # --- in the parent ---------------------------------------------------------------

    @classmethod
    def cache_key(cls, checkpoint_key: dict) -> dict:
        """What the built model depends on beyond the checkpoint; a change rebuilds it."""
        return checkpoint_key

    @classmethod
    def build(cls, checkpoint: Path, folder: Path) -> None:
        """Make the model this contender runs, in the new folder `folder`, from the checkpoint."""
        raise NotImplementedError

    @classmethod
    def weights(cls, folder: Path) -> dict | None:
        """Weight bytes {"stored_bytes", "read_bytes_per_token", ...} for the memory-bandwidth
        bound, or None when this contender has no such figure."""
        return None

    # --- in its own process -----------------------------------------------------------

    def __init__(self, folder: str, threads: int):
        self.folder, self.threads = folder, threads

    def imports(self) -> None:
        """Import the runtime's packages (timed apart from the load) and set the thread count."""
        raise NotImplementedError

    def load(self) -> None:
        """Load the model from self.folder on the CPU with self.threads threads (timed)."""
        raise NotImplementedError

    def generate(self, rows: list[list[int]], new_tokens: int, beams: int = 1) -> Trace:
        """Greedy search (beam search when beams > 1) from the prompts `rows` ([batch][prompt] ids,
        equal lengths), forced to exactly `new_tokens` new tokens (no early eos)."""
        raise NotImplementedError

    def own_workload(self, plan: Plan) -> dict | None:
        """Figures measured by the runtime's own benchmark tool instead of workload.py's calls
        (llama.cpp's llama-bench), under workload.py's names; None: run the workload."""
        return None

    def extra(self, plan: Plan, figures: dict, side: Path | None) -> None:
        """After the timed workload: add this contender's own figures; write side files under
        `side` when given (the parent compares them across contenders)."""
