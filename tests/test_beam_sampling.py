"""Beam sampling (do_sample=True with num_beams > 1) against transformers 4.57's
`_beam_search`, and two things beam search does on top of its tokens: stop strings and
cancel.

1. The distribution of the first step's sampled candidates: the beams our generate()
   returns against the exact distribution transformers' algorithm gives them (chi-square
   goodness of fit), against transformers' own generate() (two-sample chi-square), and the
   draw order of the candidates itself (Gumbel-top-k against torch.multinomial).
2. Its limits: a near-zero temperature turns beam sampling into beam search; top_k=1 does
   not (transformers keeps two tokens per beam), in transformers as in ours.
3. A seed reproduces a beam-sampling run.
4. Stop strings end a beam like eos, as transformers' StopStringCriteria does: the same
   token ids and scores as transformers, the text cut before the stop.
5. A cancelled beam search (Run.cancel, alone or in a slot engine) returns its best beams
   so far, marked "cancelled".
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import AutoTokenizer

from gpt2onnx.runtime.beam_search import _draw

from test_decoding import assert_same_ids, hf_generate
from test_sampling import PROMPT, Peaked, chi_square, hf_warpers, softmax64

PROMPTS = ["Hello, my dog is cute and", "The meaning of life is", "In 1492, Columbus sailed"]
ALPHA = 1e-3  # false-alarm rate of each chi-square test (the seeds are fixed, so the p-values are too)
BIG = 1e9  # transformers' "-1e9": the score of a beam that does not exist


@pytest.fixture(scope="module")
def peaked(tmp_path_factory) -> Peaked:
    return Peaked(tmp_path_factory.mktemp("peaked"))


# ---------------------------------------------------------------------------
# 1. The first step's sampled candidates
# ---------------------------------------------------------------------------

# num_beams=2 with one eos token: K = max(2, 1 + 1) * 2 = 4 candidates drawn without
# replacement, in draw order. max_new_tokens=1 makes every candidate end at once, so the
# finished hypotheses are the first num_beams=2 drawn (transformers' top_num_beam_mask is
# positional), scored by their log-probability; num_return_sequences=2 returns both, best
# first. The returned pair is therefore a function of the first two draws.
FIRST_STEP = dict(do_sample=True, num_beams=2, num_return_sequences=2, max_new_tokens=1, top_k=20)
N = 1500  # runs on each side: ~4 s for ours (one generate() per seed), ~5 s for transformers


def hf_first_step_logp(peaked: Peaked) -> np.ndarray:
    """What transformers' beam sampling draws the first step from, on PyTorch's logits: log_softmax,
    then its warpers with beam search's min_tokens_to_keep = 1 + n_eos = 2. [vocab] float64, -inf
    for the tokens top_k removed (beam 1 starts at -1e9 and draws nothing)."""
    scores = torch.log_softmax(peaked.torch_logits, dim=-1)
    for warper in hf_warpers(peaked.model.config(**FIRST_STEP), min_tokens_to_keep=2):
        scores = warper(None, scores)
    return scores[0].numpy().astype(np.float64)


def returned_pairs(logp: np.ndarray, drawn: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The exact distribution of the two returned beams (best first) when `drawn` candidates are
    drawn without replacement from softmax(logp) and the best two of them by score finish:
    all ordered draws enumerated, each with its Plackett-Luce probability (what
    torch.multinomial without replacement draws). drawn=2 is transformers' algorithm (the first
    two in draw order finish); drawn=4 is the bug of sorting all K candidates first."""
    support = np.flatnonzero(np.isfinite(logp))
    assert len(np.unique(logp[support])) == len(support)  # no ties: "best" is well defined
    p = softmax64(logp[support])
    pairs = [(int(a), int(b)) for a, b in itertools.permutations(support, 2) if logp[a] > logp[b]]
    index = {pair: i for i, pair in enumerate(pairs)}
    orders = np.array(list(itertools.permutations(range(len(support)), drawn)))  # [orders, drawn]
    chosen = p[orders]  # [orders, drawn]
    before = np.cumsum(chosen, axis=1) - chosen  # mass drawn before each draw
    probability = np.prod(chosen / (1 - before), axis=1)  # [orders]
    ranked = np.argsort(-logp[support][orders], axis=1)[:, :2]  # each order's best two, best first
    best = support[np.take_along_axis(orders, ranked, axis=1)]  # [orders, 2] token ids
    out = np.zeros(len(pairs))
    np.add.at(out, [index[(int(a), int(b))] for a, b in best], probability)
    return pairs, out


def pooled_counts(draws: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Counts per bin: a bin per outcome expecting >= 5 draws (as chi_square bins), and one for the rest."""
    observed = np.bincount(draws, minlength=len(expected))
    own = len(draws) * expected >= 5
    return np.append(observed[own], observed[~own].sum())


@pytest.fixture(scope="module")
def first_steps(peaked):
    """(pairs, exact probabilities, our draws, transformers' draws, transformers' first-step logp):
    the returned pair (best, second) of N runs of each, as indices into pairs; -1 for a pair
    outside the support (a token top_k removed), which the tests refuse."""
    logp = hf_first_step_logp(peaked)
    pairs, exact = returned_pairs(logp, drawn=2)
    index = {pair: i for i, pair in enumerate(pairs)}
    # Ours: generate() as users call it, seeds 0 .. N-1.
    ours = []
    for seed in range(N):
        completion = peaked.model.generate(PROMPT, seed=seed, **FIRST_STEP)
        ours.append(index.get(tuple(s.token_ids[0] for s in completion.sequences), -1))
    # Transformers: a batch of 500 copies of the prompt per call; torch.multinomial draws each
    # row of the batch on its own, so a batch is 500 independent runs (and 4x faster).
    theirs, batch = [], 500  # N is a multiple of it
    ids = torch.tensor([peaked.ids] * batch)
    torch.manual_seed(0)
    for _ in range(N // batch):
        with torch.no_grad():
            out = peaked.torch_model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=50256, **FIRST_STEP)
        theirs += [index.get(tuple(row), -1) for row in out[:, -1].view(batch, 2).tolist()]  # rows: prompt-major, best first
    return pairs, exact, np.array(ours), np.array(theirs), logp


@pytest.mark.slow  # 1,500 runs each side, and the first_steps fixture (~8 s)
def test_first_step_candidates_match_transformers(first_steps):
    pairs, exact, ours, theirs, _ = first_steps
    assert exact.sum() == pytest.approx(1.0)
    assert len(ours) == len(theirs) == N
    # Every returned pair is two tokens top_k kept, best first (by score), on both sides.
    assert (ours >= 0).all() and (theirs >= 0).all()

    # Our returned beams against the exact distribution, and transformers' against it: the
    # second shows the exact distribution is what transformers' generate really does.
    p_ours, bins = chi_square(ours, exact)
    p_theirs, _ = chi_square(theirs, exact)
    # Two-sample: ours against transformers' directly, on the same bins.
    table = np.array([pooled_counts(ours, exact), pooled_counts(theirs, exact)])
    p_two = float(stats.chi2_contingency(table).pvalue)
    print(f"beam sampling, first step: {bins} bins of {len(pairs)} pairs, N={N} each; "
          f"p(ours vs exact)={p_ours:.4f} p(transformers vs exact)={p_theirs:.4f} p(ours vs transformers)={p_two:.4f}")
    assert bins >= 20  # enough bins for the tests to have power
    assert p_ours > ALPHA and p_theirs > ALPHA and p_two > ALPHA


@pytest.mark.slow  # the first_steps fixture (1,500 runs each side)
def test_first_step_chi_square_rejects_sorting_the_candidates(first_steps):
    # Power check: had the K=4 candidates been sorted by score before the first num_beams
    # finish (the returned pair then being the best two of four draws), the test above must
    # see it. A test that can't fail proves nothing.
    _, _, ours, _, logp = first_steps
    _, sorted_first = returned_pairs(logp, drawn=4)
    p_value, bins = chi_square(ours, sorted_first)
    print(f"ours against the best two of four draws: {bins} bins, p={p_value:.3g}")
    assert p_value < ALPHA


@pytest.mark.slow  # the first_steps fixture (1,500 runs each side)
def test_first_step_scores_are_the_warped_logprobs(peaked, first_steps):
    # A finished beam's score is its token's score after log_softmax and the warpers (top_k
    # leaves the kept log-probabilities as they are), divided by length 1: transformers'
    # sequences_scores.
    logp = first_steps[-1]
    for seed in range(5):
        completion = peaked.model.generate(PROMPT, seed=seed, **FIRST_STEP)
        for sequence in completion.sequences:
            assert sequence.score == pytest.approx(logp[sequence.token_ids[0]], abs=1e-3)  # ONNX vs PyTorch logits


def test_draw_order_is_torch_multinomials():
    # The candidates' order matters (the first num_beams of them may finish), so the order
    # itself must be distributed as torch.multinomial's without replacement: each ordered
    # triple with probability p_a * p_b / (1 - p_a) * p_c / (1 - p_a - p_b). A row as the
    # search sees one: 5 live scores, a token a warper removed (-inf) and a beam not started (-1e9).
    row = np.array([1.5, 1.0, 0.5, 0.0, -1.0, -np.inf, -BIG], np.float32)
    live, n = 5, 20000
    p = softmax64(row[:live])
    triples = list(itertools.permutations(range(live), 3))
    exact = np.array([p[a] * p[b] / (1 - p[a]) * p[c] / (1 - p[a] - p[b]) for a, b, c in triples])
    index = {t: i for i, t in enumerate(triples)}

    ours = _draw(np.tile(row, (n, 1)), 3, np.random.default_rng(0))  # [n, 3]
    torch.manual_seed(0)
    theirs = torch.multinomial(torch.softmax(torch.tensor(row), -1).repeat(n, 1), 3).numpy()  # [n, 3]
    assert ours.max() < live and theirs.max() < live  # never the removed token or the dead beam
    p_ours, bins = chi_square(np.array([index[tuple(t)] for t in ours.tolist()]), exact)
    p_theirs, _ = chi_square(np.array([index[tuple(t)] for t in theirs.tolist()]), exact)
    print(f"draw order: {bins} bins, p(ours)={p_ours:.4f} p(torch.multinomial)={p_theirs:.4f}")
    assert bins == len(triples)  # every ordered triple is likely enough for its own bin
    assert p_ours > ALPHA and p_theirs > ALPHA

    # Fewer live scores than candidates (a beam's top_k leaves 2 tokens, and the other beams
    # have not started): the live ones come first, in a drawn order, then the rest by value
    # (torch.multinomial fills these with arbitrary zero-probability indices; they can only
    # ever be running beams with a -1e9 score, which never win).
    short = np.array([[0.0, -np.inf, -BIG, 0.5, -np.inf, -2 * BIG]], np.float32)
    orders = {tuple(_draw(short, 4, np.random.default_rng(seed))[0].tolist()) for seed in range(50)}
    assert orders == {(3, 0, 2, 5), (0, 3, 2, 5)}


# ---------------------------------------------------------------------------
# 2. The limits of beam sampling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "odd_heads", "deep_short"])
def test_near_zero_temperature_is_beam_search(models, name):
    # Temperature T scales every accumulated score by 1/T, so at T=1e-5 a gap of 1e-4 nats
    # between two candidates becomes 10 in the Gumbel-top-k keys, against Gumbel noise of
    # scale 1: every draw is the top one, in order, and beam sampling is beam search.
    # (These random models' distributions are nearly flat: T=1e-3 is not enough, two
    # candidates within 1e-3 nats are common.) The scores are beam search's divided by T:
    # transformers' beam sampling scores with the warped log-probabilities too. The default
    # top_k=50 stays on: beam search's K best candidates are among each beam's 50 best anyway.
    model = models[name]
    settings = dict(max_new_tokens=12, num_return_sequences=2)
    temperature, differs_at_1 = 1e-5, 0
    for prompt in PROMPTS:
        for beams in (2, 4):
            search = model.generate(prompt, num_beams=beams, **settings)
            for seed in (0, 1):
                sampled = model.generate(prompt, num_beams=beams, do_sample=True, temperature=temperature, seed=seed, **settings)
                assert [s.token_ids for s in sampled.sequences] == [s.token_ids for s in search.sequences]
                for s, b in zip(sampled.sequences, search.sequences):
                    assert s.score * temperature == pytest.approx(b.score, rel=1e-5)
                    assert s.finish_reason == b.finish_reason
                at_1 = model.generate(prompt, num_beams=beams, do_sample=True, seed=seed, **settings)
                differs_at_1 += [s.token_ids for s in at_1.sequences] != [s.token_ids for s in search.sequences]
    assert differs_at_1 >= 10  # of 12: at temperature 1 it really samples, so the equality above means something


def test_top_k_1_is_not_beam_search_in_transformers_either(exports, models):
    # transformers keeps min_tokens_to_keep = 1 + n_eos = 2 tokens per beam when it samples
    # beams, so top_k=1 still draws between each beam's best two: the draw order decides which
    # candidates finish, and the result is sometimes not beam search's. transformers does not
    # refuse top_k=1 (not even with num_beams=4, where the first step has 2 live candidates of
    # K=8: torch.multinomial fills the rest with zero-probability indices). Both sides below
    # are fixed seeds, so "sometimes" is a fact of these seeds.
    name, prompt = "tiny", PROMPTS[1]
    model, checkpoint = models[name], exports[name].checkpoint
    ids = model.tokenizer.encode(prompt)
    for beams in (2, 4):
        settings = dict(num_beams=beams, max_new_tokens=8)
        search = model.generate(prompt, **settings).token_ids
        ours = [model.generate(prompt, do_sample=True, top_k=1, seed=seed, **settings).token_ids for seed in range(8)]
        theirs = []
        for seed in range(8):
            torch.manual_seed(seed)
            (want,), _ = hf_generate(checkpoint, ids, do_sample=True, top_k=1, **settings)
            theirs.append(want)
        assert any(o != search for o in ours) and any(o == search for o in ours)
        assert any(t != search for t in theirs) and any(t == search for t in theirs)


# ---------------------------------------------------------------------------
# 3. Seeds
# ---------------------------------------------------------------------------


def test_seeded_beam_sampling_is_reproducible(models):
    model = models["tiny"]
    settings = dict(do_sample=True, num_beams=3, num_return_sequences=2, max_new_tokens=10, temperature=0.9, top_k=40)

    def run(seed):
        return [(s.token_ids, s.score) for s in model.generate(PROMPTS[0], seed=seed, **settings).sequences]

    first = run(11)
    assert run(11) == first  # ids and scores, exactly
    assert len({str(run(seed)) for seed in range(5)}) >= 3  # fixed seeds: a fact of these five
    # The step API with the same seed draws the same beams as generate().
    search = model.generator(seed=11, **settings)
    search.append_tokens(model.tokenizer.encode(PROMPTS[0]))
    while not search.is_done():
        search.generate_next_token()
    assert [(s.token_ids, s.score) for s in search.results()[0]] == first


# ---------------------------------------------------------------------------
# 4. Stop strings
# ---------------------------------------------------------------------------

# (model, length_penalty): with length_penalty 1 these random models' beams all score about
# -10 whatever their length, so the beam that met the stop string usually loses to a longer
# one (it still counts: the search differs from the one without the stop); at 0 the short
# stopped beam wins. The peaked model's beams win with the default length_penalty.
STOP_CASES = [("odd_heads", 1.0), ("odd_heads", 0.0), ("deep_short", 1.0), ("deep_short", 0.0), ("peaked", 1.0)]


@pytest.mark.slow  # transformers' beam search with stop strings, 5 cases, and the peaked model (~10 s)
@pytest.mark.parametrize("name,length_penalty", STOP_CASES, ids=lambda v: str(v))
def test_stop_strings_end_beams_as_transformers_does(exports, models, peaked, name, length_penalty):
    model, checkpoint = (peaked.model, peaked.checkpoint) if name == "peaked" else (models[name], exports[name].checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    settings = dict(num_beams=3, max_new_tokens=20, length_penalty=length_penalty)
    reasons = []
    for prompt in PROMPTS:
        free = model.generate(prompt, **settings)
        # A stop string the unstopped best beam makes: the last 3 characters of its first 3 tokens.
        stop = model.tokenizer.decode(free.token_ids[:3])[-3:]
        ours = model.generate(prompt, stop_strings=[stop], **settings)
        ids = model.tokenizer.encode(prompt)
        (want,), (want_score,) = hf_generate(checkpoint, ids, stop_strings=[stop], tokenizer=tokenizer, do_sample=False, **settings)
        # transformers returns the tokens up to and including the one that completes the stop;
        # ours are the same ids (the text is what differs: ours is cut before the stop).
        assert_same_ids(ours.token_ids, want)
        assert ours.sequences[0].score == pytest.approx(want_score, abs=1e-4)
        decoded = model.tokenizer.decode(ours.token_ids)
        assert stop not in ours.text
        if ours.finish_reason == "stop":
            assert ours.text == decoded[: decoded.find(stop)]
            assert stop not in model.tokenizer.decode(ours.token_ids[:-1])  # the last token completed it
        else:
            assert ours.finish_reason == "length" and len(ours.token_ids) == 20
            assert stop not in decoded and ours.text == decoded
            assert ours.token_ids != free.token_ids  # the stopped beam changed the search
        reasons.append(ours.finish_reason)
    print(f"{name}, length_penalty {length_penalty}: {reasons}")
    if length_penalty == 0.0:
        assert reasons == ["stop"] * len(PROMPTS)
    if name == "peaked":
        assert "stop" in reasons


# ---------------------------------------------------------------------------
# 5. Cancel
# ---------------------------------------------------------------------------


def cancel_after(run, steps: int) -> None:
    """Make `run` cancel itself after its search's `steps`-th step, as a stop button pressed
    on another thread during that step would (deterministically, unlike a thread)."""
    advance, made = run.search.advance, []

    def counted():
        tokens = advance()
        made.append(1)
        if len(made) == steps:
            run.cancel()
        return tokens

    run.search.advance = counted  # both paths call it: generate_next_token alone, Engine.step in an engine


@pytest.mark.parametrize("in_engine", [False, True], ids=["alone", "engine"])
def test_run_cancel_returns_the_best_beams_so_far(models, in_engine):
    model, steps = models["odd_heads"], 4
    settings = dict(num_beams=3, num_return_sequences=3, max_new_tokens=20, do_sample=True, top_k=50, logprobs=1)
    prompt = PROMPTS[2]

    # The reference: the step API with the same seed, cancelled after the same steps.
    search = model.generator(seed=3, **settings)
    search.append_tokens(model.tokenizer.encode(prompt))
    for _ in range(steps):
        search.generate_next_token()
    search.cancel()
    want = search.results()[0]

    engine = model.engine(slots=3) if in_engine else None
    run = model.run([prompt], model.config(**settings), seed=3, engine=engine)
    cancel_after(run, steps)
    text = "".join(delta.text for delta in run.deltas() if delta.row == 0)
    (completion,) = run.completions()

    assert run.search.is_done()
    assert [(s.token_ids, s.finish_reason) for s in completion.sequences] == [(s.token_ids, s.finish_reason) for s in want]
    assert [s.score for s in completion.sequences] == pytest.approx([s.score for s in want], abs=1e-5)
    scores = [s.score for s in completion.sequences]
    assert scores == sorted(scores, reverse=True)  # best first
    for sequence in completion.sequences:
        assert sequence.finish_reason == "cancelled"
        assert 0 < len(sequence.token_ids) <= steps  # running beams have `steps` tokens, finished ones fewer
        assert np.isfinite(sequence.score) and sequence.score > -BIG / 2
        # The score is a real beam's: its tokens' log-probabilities / length (length_penalty 1, no processors).
        logprobs = [entry.logprob for entry in sequence.logprobs]
        assert [entry.token_id for entry in sequence.logprobs] == sequence.token_ids
        assert sequence.score == pytest.approx(sum(logprobs) / len(logprobs), abs=1e-4)
        assert sequence.text == model.tokenizer.decode(sequence.token_ids)
    assert any(len(s.token_ids) == steps for s in completion.sequences)
    # The stream replays the best beam when the search ends, cancelled or not.
    assert text == completion.text
