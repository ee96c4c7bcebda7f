"""SETTINGS: every generation setting, defined once, and how each front end shows it.

Each Setting holds its name (Hugging Face's `GenerationConfig` name; OpenAI's
or gpt2onnx's where Hugging Face has none), type, default, bounds and a one-line meaning.
GenerationConfig validates with these bounds; the `generate` command's flags and
help, the server's request fields and the desktop app's controls are all made
from this table, and tests/test_settings_schema.py checks that each front end
shows every setting it should, with the bounds stated here.

A front end that shows a setting has a View of it. A View may rename it,
narrow (or, for a documented sentinel, widen) its range or change its default,
but only here, with its reason (`why`); a View that changes nothing says nothing.
The deliberate differences:

- the server (OpenAI's names, mapped once in serve/protocol.py's settings() and
  choices()): `max_tokens` (and chat's `max_completion_tokens`) is max_new_tokens;
  `temperature` 0 means greedy search (do_sample false) and a temperature
  turns sampling on unless do_sample is given; `n` is num_return_sequences with
  sampling or beams, and runs the prompt n times with greedy search; `stop` is
  stop_strings; `logit_bias` ({token id: bias}) is sequence_bias of one-token
  sequences; completions' `logprobs` N, and chat's `logprobs: true` with
  `top_logprobs` N, is logprobs N. What one request may ask for is bounded
  (PER_REQUEST), temperature and logit_bias by OpenAI's ranges.
- the desktop app: spin boxes need closed, finite ranges (SPIN_BOX); it opens
  on its Balanced sampling preset, the shipped model's own defaults (BALANCED);
  min_p 0 and seed -1 stand for "unset" (a spin box holds a number).
- the command line: --max-new-tokens defaults to 50; --stop and --bad-words
  take text (repeatable), made into stop_strings and bad_words_ids.

Pure Python: the runtime depends on numpy, onnxruntime and tokenizers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf
UNSET = object()  # a View's default when it keeps the setting's

# Why a front end differs: each reason written once, here.
OPENAI = "OpenAI's range: what OpenAI's clients send and its users know"
PER_REQUEST = "what one request may ask for at most: it bounds work or memory that the other requests would pay for"
SPIN_BOX = "a spin box needs closed, finite ends: these span what a writer uses"
BALANCED = "the app opens on its Balanced sampling preset: the shipped model's own generation_config.json (it samples)"


class TokenId(int):
    """The type of a token-id setting: an integer >= 0 below the model's vocabulary size (the model checks that)."""


@dataclass(frozen=True)
class View:
    """How one front end shows a setting. Fields left as they are keep the setting's own.

    A bound given here is closed unless its `*_open` says otherwise. `why` is required
    whenever the range or the default differs from the setting's."""

    name: str | None = None  # the front end's own name: a flag ("--stop"), OpenAI's field ("max_tokens"); None: derived from the setting's
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    default: object = UNSET
    step: float | None = None  # the desktop's spin box step
    hint: str = ""  # what differs, said to the user (in the flag's help, the control's tooltip)
    maps: str = ""  # the server: how an OpenAI-named field becomes the setting (not a plain copy)
    why: str = ""  # why the range or default differs


@dataclass(frozen=True)
class Setting:
    """One generation setting. `low`/`high` bound a number (for a list setting: each number
    in it); an infinite end means no bound, and is written closed, as the messages always
    did: numbers must be finite anyway."""

    name: str
    type: type  # int, float, bool, str (with choices), tuple (a list), TokenId
    default: object  # Hugging Face's (GenerationConfig's), unless noted
    meaning: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False  # None is a value: unset
    choices: tuple = ()  # the values it may take (bool and str settings)
    config: bool = True  # a GenerationConfig field; False: an argument of generate() (seed)
    cli: View | None = None
    serve: View | None = None
    desktop: View | None = None

    def __post_init__(self) -> None:
        for front, view in self.views().items():
            if (view.low is not None or view.high is not None or view.default is not UNSET) and not view.why:
                raise ValueError(f"{self.name}: the {front} view changes its range or default without saying why")

    def views(self) -> dict[str, View]:
        """The front ends that show it: 'cli', 'serve', 'desktop'."""
        return {front: view for front, view in (("cli", self.cli), ("serve", self.serve), ("desktop", self.desktop)) if view is not None}

    def bounds(self, front: str | None = None) -> tuple[float, float, bool, bool]:
        """(low, high, low_open, high_open): the setting's, or as this front end states them."""
        view = getattr(self, front) if front else None
        low, low_open, high, high_open = self.low, self.low_open, self.high, self.high_open
        if view is not None and view.low is not None:
            low, low_open = view.low, view.low_open
        if view is not None and view.high is not None:
            high, high_open = view.high, view.high_open
        return low, high, low_open, high_open

    def default_for(self, front: str | None = None):
        """The default this front end starts from (the setting's unless its view says otherwise)."""
        view = getattr(self, front) if front else None
        return self.default if view is None or view.default is UNSET else view.default

    def describe(self, front: str | None = None) -> str:
        """The range in words: 'an integer >= 0', 'in (0, 1]', 'an integer in [1, 16]'."""
        low, high, low_open, high_open = self.bounds(front)
        span = f"{'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"
        if self.type in (int, TokenId):
            if high == INF and not low_open:
                return f"an integer >= {_number(low)}"
            return f"an integer in {span}"
        return f"in {span}"

    def allows(self, value, front: str | None = None) -> bool:
        """Whether a number is in the range (the setting's, or as this front end states it): finite,
        ends as stated. An integer setting compares exactly (Python's ints with floats do)."""
        if self.type not in (int, TokenId):
            try:
                if not math.isfinite(value):
                    return False
            except OverflowError:  # an int too big for a float: 10**400 is not a temperature
                return False
        low, high, low_open, high_open = self.bounds(front)
        return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)

    def flag(self) -> str:
        """The command line's flag: Hugging Face's name with dashes, unless the view names it."""
        return self.cli.name if self.cli and self.cli.name else "--" + self.name.replace("_", "-")

    def field(self) -> str:
        """The server's request field: OpenAI's name where the view gives one, else Hugging Face's."""
        return self.serve.name if self.serve and self.serve.name else self.name


def _number(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _settings(*settings: Setting) -> dict[str, Setting]:
    return {setting.name: setting for setting in settings}


SETTINGS: dict[str, Setting] = _settings(
    # Length
    Setting("max_length", int, 20, "prompt + new tokens; used only when max_new_tokens is None", low=1, high=INF),
    Setting(
        "max_new_tokens", int, None, "new tokens to make at most; overrides max_length", low=0, high=INF, optional=True,
        cli=View(default=50, why="Hugging Face's max_length 20 counts the prompt too: a prompt of 20 tokens would get none"),
        serve=View(name="max_tokens", high=1 << 16, maps="OpenAI's name (chat's max_completion_tokens too); left out: the model's "
                   "max_new_tokens, else OpenAI's 16 for completions and the rest of the context for chat",
                   why=PER_REQUEST + " (with context_overflow 'slide' a sequence runs past the context)"),
        desktop=View(low=1, high=1024, default=40, step=1, why=SPIN_BOX + "; 40 new tokens are a sentence or two, read at a glance"),
    ),
    Setting("min_length", int, 0, "eos is banned while prompt + new tokens are fewer", low=0, high=INF),
    Setting(
        "min_new_tokens", int, None, "eos is banned while fewer new tokens were made", low=0, high=INF, optional=True,
        cli=View(), serve=View(high=1 << 16, why=PER_REQUEST),
    ),
    Setting(
        "stop_strings", tuple, (), "stop when the text contains one; the text is cut just before it",
        cli=View(name="--stop", hint="repeatable"),
        serve=View(name="stop", maps="OpenAI's name: a string or a list of them (at most 16, of at most 256 characters each)"),
        desktop=View(default="", hint="separate several with |; \\n is a line break", why="a text box: the strings joined by |"),
    ),
    # Strategy
    Setting(
        "do_sample", bool, False, "sample from the distribution instead of choosing the most likely token", choices=(True, False),
        cli=View(hint="--no-do-sample forces greedy search when the model's defaults sample"),
        serve=View(), desktop=View(default=True, why=BALANCED),
    ),
    Setting(
        "num_beams", int, 1, "beams for beam search; 1 means no beam search", low=1, high=INF,
        cli=View(), serve=View(high=16, why=PER_REQUEST + " (each beam is a row of the batch)"),
        desktop=View(high=8, step=1, hint="the best beam appears when the search ends", why=SPIN_BOX),
    ),
    Setting(
        "num_return_sequences", int, 1, "sequences returned per prompt (<= num_beams for beam search)", low=1, high=INF,
        cli=View(),
        serve=View(name="n", high=16, maps="OpenAI's n: num_return_sequences with sampling or beams; greedy search "
                   "runs the prompt n times (n equal choices, as OpenAI's)", why=PER_REQUEST + " (each sequence is a row of the batch)"),
    ),
    # Beam search
    Setting("length_penalty", float, 1.0, "beam scores are sum(logprobs) / length ** length_penalty", low=-INF, high=INF, cli=View(), serve=View()),
    Setting(
        "early_stopping", bool, False, "when beam search stops: True at num_beams finished, False by a heuristic, 'never' canonically",
        choices=(True, False, "never"), cli=View(), serve=View(),
    ),
    # Sampling warpers (used only with do_sample; with beams too: beam sampling)
    Setting(
        "temperature", float, 1.0, "divides the scores: < 1 sharper, > 1 flatter", low=0, high=INF, low_open=True,
        cli=View(),
        serve=View(low=0, high=2, maps="0 means greedy search (do_sample false), as OpenAI's clients mean it; another "
                   "temperature turns sampling on unless do_sample is given", why=OPENAI + "; 0 is greedy search"),
        desktop=View(low=0.05, high=2, default=0.8, step=0.05, hint="untick do_sample for greedy search",
                     why=f"{OPENAI}; {SPIN_BOX}; {BALANCED}"),
    ),
    Setting(
        "top_k", int, 50, "keep the k most likely tokens; 0 disables", low=0, high=INF,
        cli=View(), serve=View(), desktop=View(high=1000, default=0, step=1, why=f"{SPIN_BOX}; {BALANCED}"),
    ),
    Setting(
        "top_p", float, 1.0, "keep the most likely tokens holding this much probability", low=0, high=1, low_open=True,
        cli=View(), serve=View(), desktop=View(low=0.05, default=0.9, step=0.01, why=f"{SPIN_BOX}; {BALANCED}"),
    ),
    Setting(
        "min_p", float, None, "keep tokens at least this fraction as likely as the top one", low=0, high=1, optional=True,
        cli=View(), serve=View(), desktop=View(default=0.0, step=0.01, hint="0: off", why="a spin box holds a number: 0 keeps every token, as unset does"),
    ),
    Setting("typical_p", float, 1.0, "keep the most typical tokens holding this much probability", low=0, high=1, low_open=True, cli=View(), serve=View()),
    # Logits processors (greedy, sampling and beams)
    Setting(
        "repetition_penalty", float, 1.0, "> 1 discourages every token already in the text", low=0, high=INF, low_open=True,
        cli=View(), serve=View(), desktop=View(low=0.5, high=3.0, default=1.1, step=0.05, why=f"{SPIN_BOX}; {BALANCED}"),
    ),
    Setting("presence_penalty", float, 0.0, "(OpenAI's) subtracted once from each token generated so far", low=-2, high=2, cli=View(), serve=View()),
    Setting("frequency_penalty", float, 0.0, "(OpenAI's) subtracted per time a token was generated so far", low=-2, high=2, cli=View(), serve=View()),
    Setting(
        "no_repeat_ngram_size", int, 0, "no n-gram of this size appears twice; 0 disables", low=0, high=INF,
        cli=View(), serve=View(), desktop=View(high=10, step=1, why=SPIN_BOX),
    ),
    Setting(
        "bad_words_ids", tuple, None, "token sequences that must never be generated", optional=True,
        cli=View(name="--bad-words", hint="given as text: banned as written and after a space; repeatable"), serve=View(),
    ),
    Setting(
        "sequence_bias", tuple, None, "(ids, bias): added to the last id's score when the text ends with the rest",
        low=-INF, high=INF, optional=True,
        serve=View(name="logit_bias", low=-100, high=100, maps="OpenAI's logit_bias {token id: bias}: one-token sequences", why=OPENAI),
    ),
    # Special tokens: the model's own, from its generation_config.json; no front end sets them
    Setting("eos_token_id", TokenId, None, "generation stops after any of these (a token id or a list of them)", low=0, high=INF, optional=True),
    Setting("pad_token_id", TokenId, None, "fills finished rows of a batch; eos when unset", low=0, high=INF, optional=True),
    Setting("bos_token_id", TokenId, None, "the prompt for an empty prompt", low=0, high=INF, optional=True),
    # Output (gpt2onnx)
    Setting(
        "logprobs", int, None, "(gpt2onnx) report each token's log-probability and this many top alternatives", low=0, high=INF, optional=True,
        cli=View(),
        serve=View(high=20, maps="completions' logprobs N; chat's logprobs true with top_logprobs N (0 when left out)",
                   why=PER_REQUEST + "; OpenAI's chat allows 20 too (its completions 5)"),
    ),
    # Context (gpt2onnx)
    Setting(
        "context_overflow", str, "stop", "(gpt2onnx) when prompt + new tokens fill n_positions: stop (finish_reason 'context'), "
        "or slide: keep the last 3/4 of the context and go on", choices=("stop", "slide"), cli=View(), serve=View(),
    ),
    # Not a GenerationConfig field: generate(seed=...)
    Setting(
        "seed", int, None, "the sampling seed: the same seed gives the same text", low=0, high=INF, optional=True, config=False,
        cli=View(hint="prompt i uses seed N+i"),
        serve=View(high=1 << 64, high_open=True, why="a JSON integer has no size limit: 64 bits are what OpenAI's clients send, "
                   "and bound what hashing the seed costs"),
        desktop=View(low=-1, high=2**31 - 1, default=-1, step=1, hint="-1 picks a new one each time",
                     why="a spin box holds a number (-1: unset) and at most a 32-bit integer"),
    ),
)
