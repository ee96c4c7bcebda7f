"""The runtime's commands, `generate` and `score` (`classify`: classify_command.py), and the one-line error helpers
the `gpt2onnx` command (gpt2onnx.cli) builds its parser with.

Only argparse and the runtime: the umbrella command adds `export` and `desktop`,
so importing this never loads the exporter or Qt.

`generate`'s setting flags, their help (meaning, range, default) and the one
default of its own (--max-new-tokens 50) are made from the settings table
(runtime/settings.py); GenerationConfig checks the values against that table.

Text must be UTF-8: a prompt, stop string or bad word whose bytes are not
(on the command line, or on standard input with `-`) is refused with the
offset of the first bad byte, rather than run as text with U+FFFD in it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

from .errors import UsageError
from .providers import PROVIDERS, ProviderFallbackWarning
from .settings import SETTINGS, UNSET, Setting
from .tokenizer import check_unicode


# Characters that end a line for str.splitlines() and for many readers: escaped in messages,
# so an argument quoted back ("unrecognized arguments: a<newline>b") can't break the one line.
_LINE_BREAKS = {ord(c): f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(message: str) -> str:
    """The message with its line breaks escaped."""
    return message.translate(_LINE_BREAKS)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the umbrella command's parser and subparsers)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def _choice(setting: Setting):
    """A flag's value as one of a setting's choices, read case-insensitively (early_stopping: true, false, never)."""
    choices = {str(c).lower(): c for c in setting.choices}

    def parse(value: str):
        if value.lower() not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(choices)})")
        return choices[value.lower()]

    return parse


# The settings the `generate` command has flags for, in the table's order: Hugging Face's names with dashes.
CLI_SETTINGS = tuple(setting for setting in SETTINGS.values() if setting.cli is not None)


def _help(setting: Setting) -> str:
    """The flag's help from the table: meaning, the front end's hint, range and default."""
    parts = [setting.meaning]
    if setting.cli.hint:
        parts.append(setting.cli.hint)
    if setting.low is not None and setting.type in (int, float):
        parts.append(setting.describe("cli"))
    default = setting.default_for("cli")
    if setting.cli.default is not UNSET:
        parts.append(f"default {default}")
    elif default not in (None, ()):
        parts.append(f"default: the model's, else {str(default).lower() if isinstance(default, bool) else default}")
    return "; ".join(parts).replace("%", "%%")  # argparse %-formats help


def _add_setting_flag(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """One flag for a setting, made from its row of the table. Bounds are checked by
    GenerationConfig (one message, from the same table), not by argparse."""
    flag, text = setting.flag(), _help(setting)
    if setting.type is bool and setting.choices == (True, False):
        parser.add_argument(flag, dest=setting.name, action=argparse.BooleanOptionalAction, default=None, help=text)
    elif setting.choices and all(isinstance(c, str) for c in setting.choices):
        parser.add_argument(flag, dest=setting.name, choices=setting.choices, default=None, help=text)
    elif setting.choices:
        metavar = "{" + ",".join(str(c).lower() for c in setting.choices) + "}"
        parser.add_argument(flag, dest=setting.name, type=_choice(setting), default=None, metavar=metavar, help=text)
    elif setting.type is tuple:  # texts, repeatable: stop strings, bad words
        parser.add_argument(flag, dest=setting.name, action="append", default=[], metavar="TEXT", help=text)
    else:  # unset (None) takes the model's default, unless the table gives the command its own (max_new_tokens 50)
        default = None if setting.cli.default is UNSET else setting.cli.default
        parser.add_argument(flag, dest=setting.name, type=setting.type, default=default, metavar="N" if setting.type is int else "F", help=text)


def _add_model_arguments(parser: argparse.ArgumentParser, json_help: str = "print one JSON object instead of text") -> None:
    parser.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help="an export folder made by 'gpt2onnx export' (default: the shipped model, a small GPT-2 trained on fortune cookies)",
    )
    parser.add_argument("--provider", choices=PROVIDERS, default="auto", help="where to run (default auto: CUDA if it works, else CPU)")
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the model files (faster load)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="onnxruntime intra-op threads (default: all cores)")


def _add_generate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="complete prompts with an exported model",
        description="Complete each PROMPT, streaming the text, or print one JSON object with --json. Settings "
        "have Hugging Face's generation names; unset ones come from the model's generation_config.json.",
    )
    parser.add_argument("prompts", nargs="+", metavar="PROMPT", help="text to complete; '-' reads standard input")
    _add_model_arguments(parser)
    for setting in CLI_SETTINGS:
        _add_setting_flag(parser, setting)
    parser.set_defaults(run=_run_generate)


def _add_score_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="log-probability and perplexity of texts",
        description="Teacher-forced log-probability and perplexity of each TEXT. Texts longer than the context "
        "are scored with a sliding window of n_positions tokens every --stride tokens.",
    )
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="text to score; '-' reads standard input")
    _add_model_arguments(parser)
    parser.add_argument("--stride", type=int, default=None, metavar="N", help="sliding-window stride (default n_positions / 2)")
    parser.set_defaults(run=_run_score)


def add_parsers(subparsers) -> None:
    """Add `generate`, `score` and `classify` to the `gpt2onnx` command's subparsers."""
    from . import classify_command  # it imports this module's helpers

    _add_generate_parser(subparsers)
    _add_score_parser(subparsers)
    classify_command.add_parser(subparsers)


def _utf8(data: bytes, what: str) -> str:
    """Decode UTF-8 strictly; bad bytes are a one-line UsageError with their offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{what} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}): convert it, e.g. with 'iconv -f latin1 -t utf-8'"
        ) from None


def _argument_text(text: str, what: str) -> str:
    """A text argument as given: Python decodes argv with surrogateescape, so bad bytes show up as lone surrogates."""
    try:
        data = text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte made: only a caller of main() can pass one
        check_unicode(text, what)
        raise
    return _utf8(data, what)


def _read_texts(texts: list[str], what: str) -> list[str]:
    """The texts to run; '-' reads standard input."""
    out = []
    for i, text in enumerate(texts, 1):
        if text == "-":
            out.append(_utf8(sys.stdin.buffer.read(), "standard input"))
        else:
            out.append(_argument_text(text, f"{what} {i}"))
    return out


def _load(args: argparse.Namespace):
    """Load --model; say a provider fallback in one line on stderr. Returns (model, seconds)."""
    from .model import load

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderFallbackWarning)  # said below in one line instead
        model = load(args.model, provider=args.provider, verify=not args.no_verify, threads=args.threads)
    if model.provider_note:
        print(f"gpt2onnx: note: {model.provider_note}", file=sys.stderr)
    return model, time.perf_counter() - started


def bad_words_ids(tokenizer, words: list[str]) -> list[list[int]]:
    """Token sequences for each bad word: as written, and after a space (how a word appears mid-text)."""
    sequences = []
    for word in words:
        for form in (word, " " + word.lstrip()):
            ids = tokenizer.encode(form)
            if ids and ids not in sequences:
                sequences.append(ids)
    return sequences


def _sequence_json(sequence, tokenizer) -> dict:
    out = {"token_ids": sequence.token_ids, "text": sequence.text, "finish_reason": sequence.finish_reason}
    if sequence.score is not None:
        out["score"] = sequence.score
    if sequence.logprobs is not None:
        out["logprobs"] = [
            {
                "token_id": entry.token_id,
                "text": tokenizer.token_text(entry.token_id),
                "logprob": entry.logprob,
                "top": [{"token_id": t, "text": tokenizer.token_text(t), "logprob": lp} for t, lp in entry.top],
            }
            for entry in sequence.logprobs
        ]
    return out


def _run_generate(args: argparse.Namespace) -> int:
    from .model import read_defaults

    # The flags given (None: not given); --stop and --bad-words take text, read below, and --seed is no config field.
    texts = ("stop_strings", "bad_words_ids")
    settings = {s.name: getattr(args, s.name) for s in CLI_SETTINGS if s.config and s.name not in texts and getattr(args, s.name) is not None}
    if args.stop_strings:
        settings["stop_strings"] = tuple(_argument_text(s, "--stop") for s in args.stop_strings)
    bad_words = [_argument_text(w, "--bad-words") for w in args.bad_words_ids]
    # The flags over the model's own defaults (its generation_config.json, not Hugging Face's:
    # --num-return-sequences 3 is fine on a model that samples), checked before the slow load.
    config = read_defaults(args.model).update(**settings)
    prompts = _read_texts(args.prompts, "PROMPT")
    model, load_s = _load(args)
    # Checked once more against the loaded model (token ids within its vocabulary), once for all prompts.
    config = model.config(config, **({"bad_words_ids": bad_words_ids(model.tokenizer, bad_words)} if bad_words else {}))
    streaming = not args.json and config.num_beams == 1 and config.num_return_sequences == 1
    results, prefill_s, decode_s, new_tokens, steps = [], 0.0, 0.0, 0, 0
    for i, prompt in enumerate(prompts):
        seed = None if args.seed is None else args.seed + i  # each prompt its own reproducible stream
        if streaming:
            stream = model.stream(prompt, config, seed=seed)
            sys.stdout.write(prompt)
            for delta in stream:
                sys.stdout.write(delta)
                sys.stdout.flush()
            sys.stdout.write("\n")
            completion = stream.completion
        else:
            completion = model.generate(prompt, config, seed=seed)
            if not args.json:
                for sequence in completion.sequences:
                    print(prompt + sequence.text, end="\n\n" if len(completion.sequences) > 1 else "\n")
        results.append({"prompt": prompt, "sequences": [_sequence_json(s, model.tokenizer) for s in completion.sequences]})
        prefill_s += completion.timing.prefill_s
        decode_s += completion.timing.decode_s
        steps += completion.timing.new_tokens
        new_tokens += sum(len(sequence.token_ids) for sequence in completion.sequences)
    if args.json:
        # new_tokens: the tokens in the results; steps: decoding steps run (a batch's rows and beams share them).
        timing = {"load_s": load_s, "prefill_s": prefill_s, "decode_s": decode_s, "new_tokens": new_tokens, "steps": steps}
        print(json.dumps({"model": str(model.folder), "provider": model.provider, "provider_note": model.provider_note, "results": results, "timing": timing}))
    return 0


def _run_score(args: argparse.Namespace) -> int:
    texts = _read_texts(args.texts, "TEXT")
    model, load_s = _load(args)
    started = time.perf_counter()
    scores = model.score(texts, stride=args.stride)
    score_s = time.perf_counter() - started
    if args.json:
        results = [
            {"text": s.text, "token_count": s.token_count, "logprob": s.logprob, "perplexity": s.perplexity, "token_logprobs": list(s.token_logprobs)}
            for s in scores
        ]
        print(json.dumps({"model": str(model.folder), "provider": model.provider, "results": results, "timing": {"load_s": load_s, "score_s": score_s}}))
    else:
        for s in scores:
            excerpt = s.text if len(s.text) <= 40 else s.text[:37] + "..."
            print(f"perplexity {s.perplexity:12.3f}  logprob {s.logprob:12.3f}  tokens {s.token_count:6d}  {excerpt!r}")
    return 0
