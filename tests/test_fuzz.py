"""Fuzzing with hypothesis: whatever goes in, the result is a success or one
clean line of error, never another exception.

- `gpt2onnx generate` with random flags and values (run in this process, so a
  hundred examples take seconds);
- GenerationConfig from random dicts, and generation with the valid ones;
- the streaming detokeniser on token ids rich in partial UTF-8 characters;
- model folders whose manifest.json, generation_config.json, config.json or
  tokenizer.json is junk, truncated, of the wrong types or nested too deeply.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from gpt2onnx.runtime import GenerationConfig, ModelLoadError, UsageError, load
from gpt2onnx.cli import main as cli_main
from gpt2onnx.runtime.detokenizer import REPLACEMENT, StreamDecoder
from gpt2onnx.runtime.manifest import sha256_file

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        """stderr without the provider notes (a fallback to the CPU is said, not an error)."""
        return [line for line in self.stderr.splitlines() if not line.startswith("gpt2onnx: note: ")]


def cli(*argv: str, stdin: bytes = b"") -> CliResult:
    """`gpt2onnx ARGV` in this process, with standard streams like a piped process's:
    UTF-8, strict on stdout (a lone surrogate printed would fail as it does there)."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    sigterm = signal.getsignal(signal.SIGTERM)  # main() installs its own handler
    with mock.patch.object(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")):
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli_main(list(argv))
            except SystemExit as e:  # argparse: --help, --version, usage errors
                code = 0 if e.code is None else e.code
            finally:
                signal.signal(signal.SIGTERM, sigterm)
    return CliResult(code, stdout.buffer.getvalue().decode("utf-8"), stderr.buffer.getvalue().decode("utf-8"))


def assert_clean(result: CliResult) -> None:
    """Success, or exactly one error line and exit 1 or 2; never a traceback or an unexpected exception."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = result.error_lines()
    if result.code == 0:
        assert errors == [], result.stderr
        return
    assert result.code in (1, 2), (result.code, result.stderr)
    assert len(errors) == 1 and errors[0].startswith("gpt2onnx") and ": error: " in errors[0], result.stderr
    assert "GPT2ONNX_DEBUG" not in errors[0], f"an unexpected exception: {errors[0]}"
    if result.code == 1:  # the one failure that is not the user's input: CUDA asked for and missing
        assert "CUDA was asked for" in errors[0], errors[0]


# --- the generate command ---------------------------------------------------------

JUNK_NUMBERS = ["-1", "-0.0", "nan", "inf", "-inf", "1e308", "1e999", "99999999999999999999999", "x", "", "0x10", "1\n2"]


def value(valid: list[str], junk: list[str] = JUNK_NUMBERS) -> st.SearchStrategy[str]:
    """Mostly values that make sense (so runs get far), sometimes junk."""
    return st.sampled_from(valid) | st.sampled_from(valid) | st.sampled_from(valid) | st.sampled_from(junk)


FLAG_VALUES = {
    "--max-new-tokens": value(["0", "1", "3"], ["-1", "x", "2.5"]),
    "--min-new-tokens": value(["0", "2"], ["-1", "99999999999999999999"]),
    "--temperature": value(["0.5", "1", "2"], JUNK_NUMBERS + ["0"]),
    "--top-k": value(["0", "1", "5", "60000", "99999999999999999999999"], ["-1", "1.5"]),
    "--top-p": value(["0.1", "0.9", "1"], JUNK_NUMBERS + ["0", "1.5"]),
    "--min-p": value(["0", "0.05", "1"]),
    "--typical-p": value(["0.2", "0.95", "1"], JUNK_NUMBERS + ["0"]),
    "--repetition-penalty": value(["0.5", "1", "1.3"], JUNK_NUMBERS + ["0"]),
    "--presence-penalty": value(["-2", "0", "0.5", "2"], JUNK_NUMBERS + ["3"]),
    "--frequency-penalty": value(["-2", "0", "0.5", "2"], JUNK_NUMBERS + ["-3"]),
    "--no-repeat-ngram-size": value(["0", "1", "2", "99999999999999999999"], ["-1"]),
    "--num-beams": value(["1", "2", "3"], ["-1", "0", "x"]),
    "--length-penalty": value(["-1", "0", "1", "2"]),
    "--early-stopping": value(["true", "false", "never", "NEVER"], ["maybe", ""]),
    "--num-return-sequences": value(["1", "2", "3"], ["-1", "0"]),
    "--logprobs": value(["0", "2", "50257"], ["-1", "50258", "99999999999999999999"]),
    "--seed": value(["0", "7", str(2**70)], ["-5", "x"]),
    "--context-overflow": value(["stop", "slide"], ["wrap", ""]),
    "--threads": value(["0", "1", "2"], ["-1", "4096", "99999999999999999999", "x"]),
    "--provider": value(["cpu", "auto"], ["cuda", "tpu"]),
    "--stop": st.text(max_size=4) | st.sampled_from(["\udcff", "a\udce9", " ", "e"]),
    "--bad-words": st.text(max_size=6) | st.sampled_from(["\udcff", " ", "hello", "the"]),
    "--stride": st.just("1"),  # not a generate flag: argparse refuses it
    "--frobnicate": st.just("1"),
}
SWITCHES = ["--do-sample", "--no-do-sample", "--json", "--no-verify", "--help", "--version"]
PROMPTS = (
    st.text(max_size=12)
    | st.sampled_from(["-", "", "--", "-x", "\udcff", "caf\udce9", "a\ud800", "word " * 70, "🙂", "\x00\x1b[31m", "two\nlines", "\x85\u2028"])
)


@st.composite
def generate_argv(draw) -> list[str]:
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=5)):
        argv += [flag, draw(FLAG_VALUES[flag])]
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=2))
    argv += draw(st.lists(PROMPTS, min_size=draw(st.sampled_from([0, 1, 1, 1])), max_size=2))
    shuffle = draw(st.integers(0, 4)) == 0  # flags after prompts, now and then
    return draw(st.permutations(argv)) if shuffle else argv


@pytest.fixture(scope="module")
def short_model(exports) -> str:
    """The n_positions=64 export: cheap to load, and its context is easy to overflow."""
    return str(exports["deep_short"].onnx_dir)


@pytest.mark.slow  # 120 examples, each loads the model afresh (~12 s)
@settings(FUZZ, max_examples=120)
@given(argv=generate_argv(), stdin=st.binary(max_size=12) | st.sampled_from([b"", "héllo 🙂".encode()]))
@example(argv=["--", "", "--json", "--bad-words"], stdin=b"")  # three prompts, no --json: plain text out
def test_generate_command_succeeds_or_fails_in_one_line(short_model, argv, stdin):
    # Every run loads the model afresh; keep the tokens few so an example stays cheap.
    result = cli("generate", "--model", short_model, "--max-new-tokens", "2", *argv, stdin=stdin)
    assert_clean(result)
    errors = result.error_lines()
    event(f"exit {result.code}: {errors[0].split(': error: ')[-1][:25] if errors else 'ok'}")  # --hypothesis-show-statistics
    switches = argv[: argv.index("--")] if "--" in argv else argv  # after "--", "--json" is a prompt
    if result.code == 0 and "--json" in switches and not {"--help", "--version"} & set(switches):
        data = json.loads(result.stdout)
        assert all(len(s["token_ids"]) <= 3 for r in data["results"] for s in r["sequences"])


# --- GenerationConfig -------------------------------------------------------------

FIELDS = [f.name for f in fields(GenerationConfig)]
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=6)
    | st.sampled_from([10**30, -(10**30), 10**400, 2**63, 50256, 50257, 60000])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
    | st.sampled_from(["never", "\ud800", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)

TOKEN = st.integers(0, 50256) | st.sampled_from([50256, 50257, 10**6])  # GPT-2's ids are 0 .. 50256
SENSIBLE = {  # per field, values of the right type and range (most of them valid)
    "max_length": st.integers(1, 30),
    "max_new_tokens": st.none() | st.integers(0, 5) | st.just(10**30),
    "min_length": st.integers(0, 5),
    "min_new_tokens": st.none() | st.integers(0, 5),
    "stop_strings": st.lists(st.text(min_size=1, max_size=3), max_size=2) | st.text(min_size=1, max_size=3),
    "do_sample": st.booleans(),
    "num_beams": st.integers(1, 4),
    "num_return_sequences": st.integers(1, 4),
    "length_penalty": st.floats(-3, 3),
    "early_stopping": st.sampled_from([True, False, "never"]),
    "temperature": st.floats(0.01, 100) | st.just(10**30),
    "top_k": st.integers(0, 60000) | st.just(10**30),
    "top_p": st.floats(0.001, 1),
    "min_p": st.none() | st.floats(0, 1),
    "typical_p": st.floats(0.001, 1),
    "repetition_penalty": st.floats(0.01, 10),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "no_repeat_ngram_size": st.integers(0, 4) | st.just(10**30),
    "bad_words_ids": st.none() | st.lists(st.lists(TOKEN, min_size=1, max_size=3), max_size=3),
    "sequence_bias": st.none() | st.lists(st.tuples(st.lists(TOKEN, min_size=1, max_size=3), st.floats(-100, 100)), max_size=3),
    "eos_token_id": st.none() | TOKEN | st.lists(TOKEN, max_size=3),
    "pad_token_id": st.none() | TOKEN,
    "bos_token_id": st.none() | TOKEN,
    "logprobs": st.none() | st.integers(0, 5) | st.sampled_from([50257, 50258]),
    "context_overflow": st.sampled_from(["stop", "slide", "SLIDE", ""]),
}
assert set(SENSIBLE) == set(FIELDS)


@st.composite
def config_dicts(draw, extra_keys: tuple[str, ...] = ()) -> dict:
    keys = draw(st.lists(st.sampled_from(FIELDS + list(extra_keys)), max_size=6, unique=True))
    return {k: draw(JUNK if k not in SENSIBLE or draw(st.integers(0, 5)) == 0 else SENSIBLE[k]) for k in keys}


@settings(FUZZ, max_examples=300)
@given(config_dicts(extra_keys=("transformers_version", "not_a_field")))
@example({"num_beams": 2, "num_return_sequences": 10**299})  # a fresh-clone run drew it: the message printed all 300 digits
@example({"num_beams": 2, "num_return_sequences": 10**5000})  # more digits than Python will print
def test_generation_config_from_any_dict_is_valid_or_one_usage_error(data):
    try:
        config = GenerationConfig.from_dict(data)
    except UsageError as e:
        assert "\n" not in str(e) and len(str(e)) < 300
        event(f"refused: {str(e)[:30]}")
        return
    event("valid")
    hash(config)  # a valid config is immutable all the way down
    assert config.update() == config


@settings(FUZZ, max_examples=150)
@given(config_dicts(), st.sampled_from([{"do_sample": True}, {"num_beams": 2}, {}]), st.sampled_from(["Hello", "", "🙂 x"]))
def test_any_valid_config_generates_or_is_refused_for_this_model(exports, data, strategy, prompt):
    try:
        config = GenerationConfig.from_dict(strategy | data)
    except UsageError:
        return
    if config.num_beams > 4 or config.num_return_sequences > 4:
        return  # valid, and as costly as it sounds: not a fuzz case
    if config.new_token_budget(1) > 3:
        config = config.update(max_new_tokens=3)
    model = _model(exports)
    try:
        completion = model.generate(prompt, config, seed=0)
    except UsageError as e:  # e.g. a token id outside this model's vocabulary
        assert "\n" not in str(e)
        event(f"refused: {str(e)[:30]}")
        return
    event(f"generated, beams={config.num_beams}, sample={config.do_sample}")
    for sequence in completion.sequences:
        assert len(sequence.token_ids) <= 3 and all(0 <= t < model.info.vocab_size for t in sequence.token_ids)


_models: dict = {}


def _model(exports):
    if "short" not in _models:
        _models["short"] = load(exports["deep_short"].onnx_dir, provider="cpu")
    return _models["short"]


# --- the streaming detokeniser ----------------------------------------------------


@pytest.fixture(scope="module")
def split_ids(exports) -> list[int]:
    """Tokens that are part of a UTF-8 character: alone they decode to U+FFFD."""
    tokenizer = _model(exports).tokenizer
    return [i for i in range(50257) if REPLACEMENT in tokenizer.decode([i])]


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_stream_deltas_sit_exactly_where_the_final_text_has_them(exports, split_ids, data):
    tokenizer = _model(exports).tokenizer
    token = st.sampled_from(split_ids) | st.integers(0, 50256) | st.just(50256)
    ids = data.draw(st.lists(token, max_size=30))
    decoder = StreamDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    final = tokenizer.decode(ids)
    assert "".join(deltas) == final
    offset = 0
    for delta in deltas[:-1]:  # a delta before the end never carries a character still being spelled
        assert final[offset : offset + len(delta)] == delta
        assert not delta.endswith(REPLACEMENT) or final[offset + len(delta) - 1] == REPLACEMENT
        offset += len(delta)


# --- model folders with broken JSON -----------------------------------------------

JSON_FILES = ["manifest.json", "generation_config.json", "config.json", "tokenizer.json"]


def _paths(value, prefix=()):
    """Every key path into a JSON value (lists by index), for choosing what to break."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, prefix + (i,))


@st.composite
def broken_json(draw, original: bytes) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "replace", "replace", "replace", "delete", "field", "nested", "digits", "latin1"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "truncated":
        return original[: draw(st.integers(0, len(original) - 1))]
    if kind == "nested":
        return b'{"model": ' + b"[" * draw(st.sampled_from([50, 5000, 200000])) + b"]"
    if kind == "digits":
        return b'{"format": "gpt2onnx-manifest", "format_version": 1, "model": {"n_layer": ' + b"9" * 5000 + b"}}"
    if kind == "latin1":
        return original.replace(b'"', b'"\xe9', 1)
    data = json.loads(original)
    junk = JUNK | st.sampled_from([10**30, float("inf"), float("nan"), [[[[]]]], {"a": {"b": None}}])
    if kind == "field":  # a setting or key the runtime reads, with a junk value
        data[draw(st.sampled_from(FIELDS + ["model", "files", "dtype", "format_version"]))] = draw(junk)
        return json.dumps(data, allow_nan=True).encode()
    paths = [p for p in _paths(data) if p][:400]
    read = [p for p in paths if p[0] in ("model", "files", "format", "format_version", "dtype")]  # what the runtime reads
    path = draw(st.sampled_from(read if read and draw(st.integers(0, 4)) else paths))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if kind == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(junk)
    return json.dumps(data, allow_nan=True).encode()


@pytest.fixture(scope="module")
def pristine(exports, tmp_path_factory) -> Path:
    return shutil.copytree(exports["deep_short"].onnx_dir, tmp_path_factory.mktemp("fuzz") / "pristine")


@pytest.mark.slow  # 100 broken folders, each loaded (~23 s)
@settings(FUZZ, max_examples=100)
@given(data=st.data(), target=st.sampled_from(JSON_FILES), manifest_follows=st.sampled_from([True, True, True, False]), verify=st.booleans())
def test_a_folder_with_broken_json_loads_or_is_refused_in_one_line(pristine, data, target, manifest_follows, verify):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        for path in pristine.iterdir():
            if path.name in JSON_FILES:
                shutil.copy(path, folder / path.name)
            else:  # a hard link: the big model.onnx is shared, and never written
                (folder / path.name).hardlink_to(path)
        broken = data.draw(broken_json((pristine / target).read_bytes()))
        (folder / target).write_bytes(broken)
        if target != "manifest.json" and manifest_follows:
            # As if whoever changed the file also rewrote the manifest: the hashes pass, the content must be judged.
            manifest = json.loads((folder / "manifest.json").read_text())
            manifest["files"][target] = {"bytes": len(broken), "sha256": sha256_file(folder / target)}
            (folder / "manifest.json").write_text(json.dumps(manifest))
        try:
            model = load(folder, provider="cpu", verify=verify)
        except ModelLoadError as e:
            assert "\n" not in str(e) and len(str(e)) < 400, str(e)
            event(f"refused: {str(e).split(str(folder))[-1][:40]}")
            return
        event("loaded")
        assert model.info.vocab_size >= model.tokenizer.vocab_size
        model.generation_config.update()  # valid settings
        if target == "manifest.json":
            assert math.isfinite(model.info.n_positions)
