"""Sampling against Hugging Face's: the distribution tokens are drawn from, each
warper's masking, and seeded reproducibility.

- A chi-square goodness-of-fit test per sampling setting: the first token drawn
  by our pipeline (ONNX logits -> Generator._choose, the code generation runs)
  against the exact distribution transformers' warpers give on PyTorch's logits.
- Hypothesis property tests of each warper and of `warp` against transformers'
  warpers on small random score arrays.
- The sampler's determinism: a seed fixes the draws, -inf tokens are never drawn.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from transformers import GPT2LMHeadModel
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from gpt2onnx.export.pipeline import export_model
from gpt2onnx.export.random_model import make_random_gpt2
from gpt2onnx.runtime import GenerationConfig, load, sampling, warpers

# ---------------------------------------------------------------------------
# Transformers' side: the oracle
# ---------------------------------------------------------------------------


def hf_warpers(config: GenerationConfig, min_tokens_to_keep: int = 1) -> list:
    """The warpers transformers' generate builds for `config`, under the same conditions
    and in the same order (GenerationMixin._get_logits_processor, transformers 4.57)."""
    chain = []
    if config.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        chain.append(TopKLogitsWarper(config.top_k, min_tokens_to_keep=min_tokens_to_keep))
    if config.top_p < 1.0:
        chain.append(TopPLogitsWarper(config.top_p, min_tokens_to_keep=min_tokens_to_keep))
    if config.min_p is not None:
        chain.append(MinPLogitsWarper(config.min_p, min_tokens_to_keep=min_tokens_to_keep))
    if config.typical_p < 1.0:
        chain.append(TypicalLogitsWarper(config.typical_p, min_tokens_to_keep=min_tokens_to_keep))
    return chain


def hf_apply(warper, scores: np.ndarray) -> np.ndarray:
    """One transformers warper on float32 numpy scores (input_ids is unused by warpers)."""
    return warper(None, torch.tensor(scores)).numpy()


def softmax64(scores: np.ndarray) -> np.ndarray:
    """Probabilities in float64 along the last axis; -inf -> 0. The oracle's own softmax."""
    return torch.softmax(torch.as_tensor(scores, dtype=torch.float64), dim=-1).numpy()


# ---------------------------------------------------------------------------
# 1. The first sampled token's distribution, chi-square against transformers
# ---------------------------------------------------------------------------

PROMPT = "The quick brown fox"
BATCH = 500  # rows per _choose call: the logits row tiled, as if 500 sequences sampled at once
ALPHA = 1e-3  # false-alarm rate of each chi-square test: 6 settings -> at most ~0.6% for a fresh seed

# Setting -> (generation kwargs, number of draws N). top_k=0 switches off the default
# top_k=50 so that one warper acts alone on the whole vocabulary. N follows the cost of
# a draw: with top_k off, typical_p sorts all 50257 scores of every row (~5 ms a row
# here, against 0.3-3 ms for the others), so it gets 1000 draws to keep the file near
# half a minute. Its support (88 tokens) still gives 41 bins of >= 5 expected draws,
# and a single draw outside the support fails the test.
SAMPLING_SETTINGS = {
    "temperature": (dict(temperature=0.7, top_k=0), 4000),
    "top_k": (dict(top_k=20), 8000),
    "top_p": (dict(top_p=0.6, top_k=0), 4000),
    "min_p": (dict(min_p=0.05, top_k=0), 4000),
    "typical_p": (dict(typical_p=0.6, top_k=0), 1000),
    "combined": (dict(temperature=0.8, top_k=40, top_p=0.9), 8000),
}


class Peaked:
    """A random GPT-2 with peaked next-token distributions, as ONNX and as PyTorch,
    and both models' logits for PROMPT's next token."""

    def __init__(self, root):
        # initializer_range=0.5 instead of GPT-2's 0.02: the default gives nearly uniform
        # distributions over 50257 tokens, where no warper has anything to cut. At 0.5 the
        # top token holds ~18% for PROMPT, ~10 tokens half the mass, ~300 tokens 90%.
        self.checkpoint = make_random_gpt2(
            root / "checkpoint", n_layer=2, n_head=4, n_embd=64, n_positions=128, seed=11, initializer_range=0.5
        )
        # The export's default validation tolerance (atol 1e-3) holds: ONNX and PyTorch
        # logits differ by ~3e-5 for this model, so no larger atol is needed.
        export_model(str(self.checkpoint), root / "onnx")
        self.model = load(root / "onnx", provider="cpu")
        self.torch_model = GPT2LMHeadModel.from_pretrained(self.checkpoint).eval()
        self.ids = self.model.tokenizer.encode(PROMPT)
        with torch.no_grad():
            self.torch_logits = self.torch_model(torch.tensor([self.ids])).logits[:, -1, :]  # [1, vocab] float32
        self._draws: dict[str, np.ndarray] = {}

    def generator(self, seed: int, **kwargs):
        """A sampling Generator prefilled with PROMPT: its state.logits are the ONNX next-token logits [1, vocab]."""
        generator = self.model.generator(do_sample=True, max_new_tokens=1, seed=seed, **kwargs)
        generator.append_tokens(self.ids)
        return generator

    def expected(self, config: GenerationConfig) -> np.ndarray:
        """The exact distribution of the first sampled token under transformers: its warpers
        on PyTorch's logits, in its order, then softmax. [vocab] float64."""
        scores = self.torch_logits
        for warper in hf_warpers(config):
            scores = warper(None, scores)
        return softmax64(scores)[0]

    def draws(self, name: str) -> np.ndarray:
        """N first tokens for setting `name`, drawn by Generator._choose (what generate_next_token
        does with the logits) on the ONNX logits tiled into batches, one seeded rng throughout."""
        if name not in self._draws:
            kwargs, n = SAMPLING_SETTINGS[name]
            generator = self.generator(seed=2024, **kwargs)
            batch = np.repeat(generator.state.logits, BATCH, axis=0)  # [BATCH, vocab]
            self._draws[name] = np.concatenate([generator._choose(batch) for _ in range(n // BATCH)])
        return self._draws[name]


@pytest.fixture(scope="module")
def peaked(tmp_path_factory) -> Peaked:
    return Peaked(tmp_path_factory.mktemp("peaked"))


def chi_square(draws: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """Pearson's goodness-of-fit p-value of the draws against `expected` [vocab], and the number
    of bins. Tokens with an expected count >= 5 get a bin each; the rest of the mass is pooled
    into one bin (or, when even that expects < 5 draws, into the smallest bin) so that the
    chi-square approximation holds."""
    n = len(draws)
    observed = np.bincount(draws, minlength=len(expected)).astype(np.float64)
    expected_counts = n * expected
    own = expected_counts >= 5
    obs, exp = list(observed[own]), list(expected_counts[own])
    rest_obs, rest_exp = observed[~own].sum(), expected_counts[~own].sum()
    if rest_exp >= 5:
        obs.append(rest_obs)
        exp.append(rest_exp)
    elif rest_obs or rest_exp:
        smallest = int(np.argmin(exp))
        obs[smallest] += rest_obs
        exp[smallest] += rest_exp
    exp = np.array(exp) * n / np.sum(exp)  # scipy wants equal totals; float rounding aside they are
    return float(stats.chisquare(obs, exp).pvalue), len(obs)


def test_onnx_logits_match_pytorch_for_the_prompt(peaked):
    # The chi-square tests compare against PyTorch's logits: they must be the same model.
    onnx_logits = peaked.generator(seed=0, top_k=0).state.logits
    assert onnx_logits.shape == peaked.torch_logits.shape
    np.testing.assert_allclose(onnx_logits, peaked.torch_logits.numpy(), rtol=0, atol=1e-3)
    # And the distribution is as peaked as the settings below assume.
    probs = np.sort(softmax64(peaked.torch_logits)[0])[::-1]
    assert probs[0] > 0.1
    assert np.searchsorted(np.cumsum(probs), 0.5) < 30


@pytest.mark.slow  # thousands of draws per warper against transformers' (~10 s)
@pytest.mark.parametrize("name", list(SAMPLING_SETTINGS))
def test_first_token_distribution_matches_transformers(peaked, name):
    kwargs, n = SAMPLING_SETTINGS[name]
    generator = peaked.generator(seed=0, **kwargs)
    expected = peaked.expected(generator.config)
    support = expected > 0

    # Deterministically first: our warpers on our logits keep exactly the tokens
    # transformers' warpers keep on PyTorch's (no token of this prompt sits so close
    # to a cut that the ~3e-5 logit difference could move it).
    ours = warpers.warp(generator.state.logits, generator.config)
    assert np.array_equal(np.isfinite(ours[0]), support)

    draws = peaked.draws(name)
    assert len(draws) == n
    # A token transformers gives probability 0 (a warper removed it) is never drawn.
    outside = sorted(set(draws[~support[draws]].tolist()))
    assert not outside, f"drew tokens outside the support: {outside}"

    p_value, bins = chi_square(draws, expected)
    print(f"{name}: support {support.sum()} tokens, {bins} bins, N={n}, chi-square p={p_value:.4f}")
    assert bins >= 5  # enough bins for the test to have power
    assert p_value > ALPHA, f"{name}: chi-square p={p_value:.3g} (N={n}, {bins} bins)"


@pytest.mark.slow  # 4,000 draws, the distribution test's power check (~3 s)
def test_chi_square_rejects_a_slightly_wrong_distribution(peaked):
    # Power check of the test above: the temperature 0.7 draws against the distribution at
    # temperature 0.77 (10% off) must be rejected; a test that can't fail proves nothing.
    kwargs, _ = SAMPLING_SETTINGS["temperature"]
    wrong = peaked.expected(GenerationConfig(do_sample=True, **(kwargs | dict(temperature=0.77))))
    p_value, _ = chi_square(peaked.draws("temperature"), wrong)
    assert p_value < ALPHA


def test_generate_draws_the_token_choose_draws(peaked):
    # The chi-square tests sample through Generator._choose; generate() must draw the same
    # first token from the same seed, so they test what users get.
    logits = peaked.generator(seed=0, top_k=20).state.logits
    for seed in range(5):
        fresh = peaked.generator(seed=seed, top_k=20)
        completion = peaked.model.generate(PROMPT, do_sample=True, seed=seed, max_new_tokens=1, top_k=20)
        assert completion.token_ids == [int(fresh._choose(logits)[0])]


def test_generate_is_reproducible_from_its_seed(peaked):
    def run(seed):
        return peaked.model.generate(PROMPT, do_sample=True, seed=seed, max_new_tokens=12, top_k=0).token_ids

    assert run(7) == run(7)
    assert run(7) != run(8)  # fixed seeds: a fact of these two, not a probability


# ---------------------------------------------------------------------------
# 2. Property tests of each warper against transformers'
# ---------------------------------------------------------------------------

# Logits of GPT-2 size: within +-30 every probability is > 1e-28, so nothing underflows in
# float32 and a cut decided by float32 rounding is only ever one at a threshold (see below).
LIMIT = 30.0
EXAMPLES = 200
SHAPES = st.tuples(st.integers(1, 3), st.integers(2, 64))  # rows, vocab


def score_arrays(unique: bool, ties: bool = False):
    """float32 scores [rows, vocab]. unique: all values distinct, for the warpers that sort
    (transformers' torch.sort is unstable, so tied scores would be cut in arbitrary order).
    ties: draw often from a few values, to test tie handling where it is defined."""
    elements = st.floats(-LIMIT, LIMIT, width=32)
    if ties:
        elements = st.one_of(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), elements)
    return SHAPES.flatmap(lambda shape: arrays(np.float32, shape, elements=elements, unique=unique))


PROBABILITY = st.floats(0, 1, exclude_min=True)  # top_p: (0, 1]
MIN_KEEP = st.integers(1, 3)


# A token whose fate turns on float32 rounding: its statistic is within a relative 1e-4 of
# the cut. numpy and torch round differently (summation order, exp), so either answer is
# right there; such examples are discarded (assume), every other one must match exactly.
def _near(a, b) -> np.ndarray:
    return np.abs(a - b) <= 1e-4 * np.maximum(np.abs(a), np.abs(b))


def ambiguous_top_p(row: np.ndarray, p: float, min_tokens_to_keep: int) -> bool:
    ids = np.flatnonzero(np.isfinite(row))
    order = ids[np.argsort(row[ids])]  # ascending, as transformers sorts
    cumulative = np.cumsum(softmax64(row[order]))
    unprotected = cumulative[: max(len(order) - min_tokens_to_keep, 0)]
    return bool(_near(unprotected, 1 - p).any())


def ambiguous_min_p(row: np.ndarray, p: float, min_tokens_to_keep: int) -> bool:
    ids = np.flatnonzero(np.isfinite(row))
    order = ids[np.argsort(-row[ids])]  # descending: the first min_tokens_to_keep are kept anyway
    ratio = np.exp(row[order].astype(np.float64) - row[order[0]])  # probability / top probability
    return bool(_near(ratio[min_tokens_to_keep:], p).any())


def ambiguous_typical_p(row: np.ndarray, mass: float, min_tokens_to_keep: int) -> bool:
    ids = np.flatnonzero(np.isfinite(row))
    logp = torch.log_softmax(torch.tensor(row[ids], dtype=torch.float64), -1).numpy()
    distance = np.abs(-logp - -(logp * np.exp(logp)).sum())  # |surprise - entropy|
    order = np.argsort(distance)
    cumulative = np.cumsum(softmax64(row[ids][order]))
    if _near(cumulative, mass).any():  # a near-mass sum can move the cut
        return True
    # Near-equal distances can swap under rounding; that changes the answer only next to
    # the cut (the last kept position, or the last one min_tokens_to_keep forces).
    last = min(int((cumulative < mass).sum()), len(order) - 1)
    gaps = np.diff(distance[order]) <= 1e-4  # gaps[i]: positions i and i+1 nearly tie
    edges = {last - 1, last, min_tokens_to_keep - 2, min_tokens_to_keep - 1}
    return any(0 <= i < len(gaps) and gaps[i] for i in edges)


AMBIGUOUS = {"top_p": ambiguous_top_p, "min_p": ambiguous_min_p, "typical_p": ambiguous_typical_p}


def assume_clear_cut(kind: str, scores: np.ndarray, param: float, min_tokens_to_keep: int) -> None:
    assume(not any(AMBIGUOUS[kind](row, param, min_tokens_to_keep) for row in scores))


def check_warper_output(scores: np.ndarray, out: np.ndarray, at_least: int) -> None:
    """What every cutting warper guarantees for its input `scores`: each score either kept as
    it was or -inf; at least `at_least` kept per row (or the whole row, if shorter); the kept
    tokens renormalised with their relative probabilities unchanged."""
    assert out.shape == scores.shape and out.dtype == np.float32
    kept = np.isfinite(out)
    assert (kept | np.isneginf(out)).all()  # no NaN, no +inf
    assert np.array_equal(out[kept], scores[kept])  # kept scores untouched
    assert (kept.sum(axis=1) >= min(at_least, scores.shape[1])).all()
    probs = warpers.softmax(out)  # the runtime's softmax, as the sampler uses it
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    assert (probs[~kept] == 0).all()
    for row in range(scores.shape[0]):
        # Renormalised: each kept token's probability is its original one over the kept mass.
        original = softmax64(scores[row])
        renormalised = original[kept[row]] / original[kept[row]].sum()
        np.testing.assert_allclose(probs[row, kept[row]], renormalised, rtol=1e-4, atol=1e-7)


def assert_same_cut(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    ours_removed, theirs_removed = np.isneginf(ours), np.isneginf(theirs)
    assert np.array_equal(ours_removed, theirs_removed), (
        f"{what}: we remove {[np.flatnonzero(r).tolist() for r in ours_removed]}, "
        f"transformers removes {[np.flatnonzero(r).tolist() for r in theirs_removed]}"
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(scores=score_arrays(unique=False, ties=True), data=st.data(), min_tokens_to_keep=MIN_KEEP)
def test_top_k_properties(scores, data, min_tokens_to_keep):
    # Ties allowed: top_k keeps every token tied with the k-th score, which is well defined.
    vocab = scores.shape[1]
    k = data.draw(st.integers(1, vocab + 2), label="k")  # k > vocab keeps everything
    before = scores.copy()
    out = warpers.top_k(scores, k, min_tokens_to_keep)
    keep = min(max(k, min_tokens_to_keep), vocab)
    assert np.array_equal(scores, before)  # a pure function: the input is not modified
    check_warper_output(scores, out, keep)
    kept = np.isfinite(out)
    for row in range(scores.shape[0]):
        # Exactly the tokens scoring at least the keep-th highest score.
        kth = np.sort(scores[row])[::-1][keep - 1]
        assert np.array_equal(kept[row], scores[row] >= kth)
    assert_same_cut(out, hf_apply(TopKLogitsWarper(k, min_tokens_to_keep=min_tokens_to_keep), scores), "top_k")


@settings(max_examples=EXAMPLES, deadline=None)
@given(scores=score_arrays(unique=True), p=PROBABILITY, min_tokens_to_keep=MIN_KEEP)
def test_top_p_properties(scores, p, min_tokens_to_keep):
    assume_clear_cut("top_p", scores, p, min_tokens_to_keep)
    before = scores.copy()
    out = warpers.top_p(scores, p, min_tokens_to_keep)
    assert np.array_equal(scores, before)  # a pure function: the input is not modified
    check_warper_output(scores, out, min_tokens_to_keep)
    for row in range(scores.shape[0]):
        # The kept tokens are the most likely ones, and hold at least p of the mass
        # (transformers' rule: drop while the mass of the least likely ones is <= 1 - p).
        kept = np.isfinite(out[row])
        assert scores[row, kept].min() > scores[row, ~kept].max(initial=-np.inf)
        assert softmax64(scores[row])[kept].sum() >= p * (1 - 1e-5)
    assert_same_cut(out, hf_apply(TopPLogitsWarper(p, min_tokens_to_keep=min_tokens_to_keep), scores), "top_p")


@settings(max_examples=EXAMPLES, deadline=None)
@given(scores=score_arrays(unique=True), p=st.floats(0, 1), min_tokens_to_keep=MIN_KEEP)
def test_min_p_properties(scores, p, min_tokens_to_keep):
    # p = 0 is allowed (by transformers and our config) and keeps everything.
    assume_clear_cut("min_p", scores, p, min_tokens_to_keep)
    before = scores.copy()
    out = warpers.min_p(scores, p, min_tokens_to_keep)
    assert np.array_equal(scores, before)  # a pure function: the input is not modified
    check_warper_output(scores, out, min_tokens_to_keep)
    for row in range(scores.shape[0]):
        # Kept: the min_tokens_to_keep best, and every token at least p times as likely as the best.
        probs = softmax64(scores[row])
        by_score = np.argsort(-scores[row])
        expected = probs >= p * probs.max()
        expected[by_score[:min_tokens_to_keep]] = True
        assert np.array_equal(np.isfinite(out[row]), expected)
    assert_same_cut(out, hf_apply(MinPLogitsWarper(p, min_tokens_to_keep=min_tokens_to_keep), scores), "min_p")


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    scores=score_arrays(unique=True),
    # transformers' TypicalLogitsWarper takes mass in (0, 1); generate skips it at 1.0, as warp() does.
    mass=st.floats(0, 1, exclude_min=True, exclude_max=True),
    min_tokens_to_keep=MIN_KEEP,
)
def test_typical_p_properties(scores, mass, min_tokens_to_keep):
    assume_clear_cut("typical_p", scores, mass, min_tokens_to_keep)
    before = scores.copy()
    out = warpers.typical_p(scores, mass, min_tokens_to_keep)
    assert np.array_equal(scores, before)  # a pure function: the input is not modified
    check_warper_output(scores, out, min_tokens_to_keep)
    for row in range(scores.shape[0]):
        # The kept tokens are the ones whose surprise is closest to the entropy.
        logp = torch.log_softmax(torch.tensor(scores[row], dtype=torch.float64), -1).numpy()
        distance = np.abs(-logp - -(logp * np.exp(logp)).sum())
        kept = np.isfinite(out[row])  # (min_tokens_to_keep extends the same order, so it holds there too)
        assert distance[kept].max() < distance[~kept].min(initial=np.inf)
    assert_same_cut(out, hf_apply(TypicalLogitsWarper(mass, min_tokens_to_keep=min_tokens_to_keep), scores), "typical_p")


@settings(max_examples=EXAMPLES, deadline=None)
@given(scores=score_arrays(unique=False, ties=True), value=st.floats(0.05, 20))
def test_temperature_properties(scores, value):
    before = scores.copy()
    out = warpers.temperature(scores, value)
    assert np.array_equal(scores, before)
    assert out.dtype == np.float32 and np.isfinite(out).all()  # it scales, it never removes
    # Bit for bit transformers' division (both divide in float32).
    np.testing.assert_array_equal(out, hf_apply(TemperatureLogitsWarper(value), scores))
    probs = warpers.softmax(out)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    # The same ranking, sharper below 1 and flatter above: the top probability moves accordingly.
    for row in range(scores.shape[0]):
        a, b = np.meshgrid(scores[row], scores[row])
        x, y = np.meshgrid(out[row], out[row])
        assert (x[a < b] <= y[a < b]).all()
    top, original_top = probs.max(axis=1), warpers.softmax(scores).max(axis=1)
    if value < 1:
        assert (top >= original_top * (1 - 1e-5)).all()
    else:
        assert (top <= original_top * (1 + 1e-5)).all()


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    scores=score_arrays(unique=True),
    data=st.data(),
    temperature=st.one_of(st.just(1.0), st.floats(0.25, 4)),
    top_p=st.one_of(st.just(1.0), PROBABILITY),
    min_p=st.one_of(st.none(), st.floats(0, 1)),
    typical_p=st.one_of(st.just(1.0), st.floats(0, 1, exclude_min=True, exclude_max=True)),
    min_tokens_to_keep=MIN_KEEP,
)
def test_warp_chains_like_transformers(scores, data, temperature, top_p, min_p, typical_p, min_tokens_to_keep):
    # warp() must be transformers' warpers in transformers' order under transformers' conditions
    # (temperature != 1, top_k != 0, top_p < 1, min_p set, typical_p < 1); later warpers then
    # see the -inf left by earlier ones.
    top_k = data.draw(st.integers(0, scores.shape[1] + 2), label="top_k")
    config = GenerationConfig(
        do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p
    )
    scaled = scores / np.float32(temperature)
    assume(len(np.unique(scaled)) == scaled.size)  # division can merge neighbouring floats into a tie
    theirs = scores
    for warper in hf_warpers(config, min_tokens_to_keep):
        kind = {TopPLogitsWarper: "top_p", MinPLogitsWarper: "min_p", TypicalLogitsWarper: "typical_p"}.get(type(warper))
        if kind:
            param = {"top_p": top_p, "min_p": min_p, "typical_p": typical_p}[kind]
            assume_clear_cut(kind, theirs, param, min_tokens_to_keep)
        theirs = hf_apply(warper, theirs)
    before = scores.copy()
    ours = warpers.warp(scores, config, min_tokens_to_keep)
    assert np.array_equal(scores, before)
    check_warper_output(scaled, ours, min_tokens_to_keep)
    assert_same_cut(ours, theirs, f"warp({config})")
    np.testing.assert_array_equal(ours[np.isfinite(ours)], theirs[np.isfinite(theirs)])


def test_top_p_keeps_min_tokens_to_keep_when_fewer_tokens_are_left():
    # Two live tokens (a processor banned the rest) and min_tokens_to_keep=3: transformers
    # protects the 3 most likely positions of the sorted row, so both live tokens survive.
    scores = np.array([[0.0, 1.0, -np.inf, -np.inf]], np.float32)
    theirs = hf_apply(TopPLogitsWarper(0.5, min_tokens_to_keep=3), scores)
    assert np.isfinite(theirs[0, :2]).all()
    assert_same_cut(warpers.top_p(scores, 0.5, min_tokens_to_keep=3), theirs, "top_p")


# ---------------------------------------------------------------------------
# 3. The sampler: seeded, and never a removed token
# ---------------------------------------------------------------------------


def masked_scores(seed: int, rows: int = 4, vocab: int = 1000) -> np.ndarray:
    """Random scores with ~80% of each row at -inf, as after top_k or top_p."""
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    scores[rng.random((rows, vocab)) < 0.8] = -np.inf
    scores[:, 0] = 0.0  # at least one live token per row
    return scores


def test_sample_is_determined_by_the_seed():
    scores = masked_scores(0)

    def draws(seed):
        rng = np.random.default_rng(seed)
        return np.stack([sampling.sample(scores, rng) for _ in range(50)])  # [50, rows]

    assert np.array_equal(draws(5), draws(5))
    assert not np.array_equal(draws(5), draws(6))  # fixed seeds: a fact of these two
    assert draws(5).dtype == np.int64


def test_sample_of_a_row_does_not_depend_on_the_other_rows():
    # A seeded row gets the same token whatever its neighbours in the batch hold
    # (one uniform number per row), so batching prompts doesn't change a seeded result.
    a, b = masked_scores(1), masked_scores(2)
    b[0] = a[0]
    for seed in range(20):
        assert sampling.sample(a, np.random.default_rng(seed))[0] == sampling.sample(b, np.random.default_rng(seed))[0]


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    scores=SHAPES.flatmap(
        lambda shape: arrays(
            np.float32,
            shape,
            # The whole float32 range, and many -inf: the sampler must cope with any scores.
            elements=st.one_of(st.just(-np.inf), st.floats(width=32, allow_nan=False, allow_infinity=False)),
        )
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_never_draws_a_removed_token(scores, seed):
    scores[:, -1] = np.where(np.isfinite(scores).any(axis=1), scores[:, -1], 0.0)  # >= 1 live token per row
    rng = np.random.default_rng(seed)
    for _ in range(5):
        tokens = sampling.sample(scores, rng)
        assert tokens.shape == (scores.shape[0],)
        assert np.isfinite(scores[np.arange(scores.shape[0]), tokens]).all()
    # A row with a single live token always draws it.
    single = np.full_like(scores, -np.inf)
    live = rng.integers(0, scores.shape[1], scores.shape[0])
    single[np.arange(scores.shape[0]), live] = scores.max()
    assert np.array_equal(sampling.sample(single, rng), live)
