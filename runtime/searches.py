"""make_search: the search a config asks for. It lives apart from search.py, the interface, so
that the interface never imports its implementations (greedy search and sampling in
generator.py, beam search and beam sampling in beam_search.py)."""

from __future__ import annotations

import numpy as np

from .beam_search import BeamSearch
from .config import GenerationConfig
from .constraints import ConstraintFactory
from .generator import Generator
from .search import Search, StopCheck
from .session import DecoderSession


def make_search(
    session: DecoderSession,
    config: GenerationConfig,
    rng: np.random.Generator | None = None,
    stop: StopCheck | None = None,
    constraint: ConstraintFactory | None = None,
) -> Search:
    """Beam search (or beam sampling) when num_beams > 1, else greedy search or sampling. `stop` lets
    beam search end a beam whose text contains a stop string; `constraint` makes each row's state
    (constraints.py), which masks its choices and follows its tokens."""
    search: Search = BeamSearch(session, config, rng, stop) if config.num_beams > 1 else Generator(session, config, rng, stop)
    search.constraint = constraint
    return search
