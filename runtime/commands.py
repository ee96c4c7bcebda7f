"""The runtime's commands, `generate` and `score` (`classify`: classify_command.py), and the one-line error helpers
the `gpt2onnx` command (gpt2onnx.cli) builds its parser with.

Only argparse and the runtime: the umbrella command adds `export` and `desktop`,
so importing this never loads the exporter or Qt.

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


def _early_stopping(value: str):
    choices = {"true": True, "false": False, "never": "never"}
    if value.lower() not in choices:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from true, false, never)")
    return choices[value.lower()]


# Flag -> (GenerationConfig field, type, help): Hugging Face's names turned into flags.
GENERATION_FLAGS = {
    "--max-new-tokens": ("max_new_tokens", int, "new tokens at most (default 50)"),
    "--min-new-tokens": ("min_new_tokens", int, "no eos before this many new tokens"),
    "--temperature": ("temperature", float, "divide the scores before sampling (< 1 is sharper)"),
    "--top-k": ("top_k", int, "sample from the k most likely tokens (0: no limit)"),
    "--top-p": ("top_p", float, "sample from the most likely tokens holding this much probability"),
    "--min-p": ("min_p", float, "drop tokens less likely than this fraction of the top one"),
    "--typical-p": ("typical_p", float, "locally typical sampling: the mass to keep"),
    "--repetition-penalty": ("repetition_penalty", float, "> 1 discourages tokens already in the text"),
    "--presence-penalty": ("presence_penalty", float, "OpenAI's: subtracted once from each token generated so far"),
    "--frequency-penalty": ("frequency_penalty", float, "OpenAI's: subtracted per time a token was generated"),
    "--no-repeat-ngram-size": ("no_repeat_ngram_size", int, "never repeat an n-gram of this size"),
    "--num-beams": ("num_beams", int, "beam search with this many beams"),
    "--length-penalty": ("length_penalty", float, "beam score = sum of logprobs / length ** this"),
    "--early-stopping": ("early_stopping", _early_stopping, "when beam search stops: true, false or never"),
    "--num-return-sequences": ("num_return_sequences", int, "sequences per prompt"),
    "--logprobs": ("logprobs", int, "give each token's log-probability and the N most likely alternatives"),
}
DEFAULT_MAX_NEW_TOKENS = 50


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
    parser.add_argument(
        "--do-sample",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample instead of greedy or beam search; --no-do-sample forces greedy when the model's defaults sample",
    )
    for flag, (field, kind, text) in GENERATION_FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, metavar="N", help=text)
    parser.add_argument("--bad-words", action="append", default=[], metavar="TEXT", help="never generate this text (repeatable)")
    parser.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop where the text contains this (repeatable)")
    parser.add_argument("--seed", type=int, default=None, metavar="N", help="seed for sampling: the same seed gives the same text")
    parser.add_argument(
        "--context-overflow",
        choices=("stop", "slide"),
        default=None,
        help="when the context is full: stop (default), or slide: keep its last 3/4 and go on (the model forgets the start)",
    )
    parser.set_defaults(run=_run_generate, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)


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

    settings = {field: getattr(args, field) for field, *_ in GENERATION_FLAGS.values() if getattr(args, field) is not None}
    if args.do_sample is not None:
        settings["do_sample"] = args.do_sample
    if args.context_overflow is not None:
        settings["context_overflow"] = args.context_overflow
    if args.stop:
        settings["stop_strings"] = tuple(_argument_text(s, "--stop") for s in args.stop)
    bad_words = [_argument_text(w, "--bad-words") for w in args.bad_words]
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
