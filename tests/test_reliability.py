"""Reliability and safety: model folders that try to read outside themselves,
no unpickling, bad and hard input (empty, too long, emoji, right-to-left,
control characters, lone surrogates, invalid UTF-8), one model shared by many
threads, cancelling from another thread, and the README's troubleshooting table.

Related cases covered elsewhere: missing, truncated and tampered files, unknown
manifest versions and a tokenizer bigger than the vocabulary (test_load.py);
absurd settings (test_generation.py, test_cli.py); export refusals and killed
exports (test_export.py); random input of every kind (test_fuzz.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx.external_data_helper import convert_model_to_external_data

from gpt2onnx.export.optimize import GraphPlan
from gpt2onnx.export.pipeline import export_model
from gpt2onnx.runtime import ModelLoadError, UsageError, load
from gpt2onnx.runtime.classifier import ClassifierSession
from gpt2onnx.runtime.detokenizer import REPLACEMENT
from gpt2onnx.runtime.manifest import sha256_file

from conftest import CLI
from test_classify import EOS, make_classifier
from test_fuzz import assert_clean, cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(exports):
    return load(exports["tiny"].onnx_dir, provider="cpu")


@pytest.fixture(scope="module")
def short(exports):
    """n_positions = 64."""
    return load(exports["deep_short"].onnx_dir, provider="cpu")


# --- a model folder may not make the runtime read outside it ---------------------


def rewrite_manifest(folder: Path, drop: tuple[str, ...] = ()) -> None:
    """List every file in the folder with its true size and sha256, as someone who
    crafted the folder would: the manifest alone can't protect against them."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.name != "manifest.json" and p.name not in drop
    }
    path.write_text(json.dumps(manifest))


def move_weights_to(folder: Path, location: str) -> None:
    """Store the graph's weights as external data and point every tensor at `location`."""
    model = onnx.load(folder / "model.onnx")
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=1024)
    onnx.save_model(model, folder / "model.onnx")  # writes weights.bin beside it
    if location != "weights.bin":
        for tensor in onnx.external_data_helper._get_all_tensors(model):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(model, folder / "model.onnx")


class Reads:
    """Inside `with reads:`, every file Python opens (an audit hook) and every onnxruntime session made."""

    def __init__(self):
        self.paths: list[str] = []
        self.sessions = 0
        self.active = False
        sys.addaudithook(self._hook)  # hooks can't be removed: this one records only while active

    def _hook(self, event, args):
        if self.active and event == "open" and isinstance(args[0], (str, bytes, Path)):
            self.paths.append(str(Path(os.fsdecode(args[0])).resolve()))

    def __enter__(self):
        self.paths, self.sessions, self.active = [], 0, True
        return self

    def __exit__(self, *exc):
        self.active = False


_reads: list[Reads] = []


@pytest.fixture
def reads(monkeypatch) -> Reads:
    if not _reads:
        _reads.append(Reads())
    real = onnxruntime.InferenceSession

    def session(*args, **kwargs):
        _reads[0].sessions += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    return _reads[0]


@pytest.fixture
def crafted(exports, tmp_path):
    """A copy of the tiny export, and a secret file beside it that no load may read."""
    folder = shutil.copytree(exports["deep_short"].onnx_dir, tmp_path / "model")
    return folder, tmp_path / "secret.bin"


@pytest.mark.parametrize("how", ["../secret.bin", "absolute", "symlink", "unlisted"])
def test_external_data_outside_the_folder_is_refused_before_anything_reads_it(crafted, reads, how):
    folder, secret = crafted
    location = {"../secret.bin": "../secret.bin", "absolute": str(secret), "symlink": "weights.bin", "unlisted": "weights.bin"}[how]
    move_weights_to(folder, location)
    if how == "unlisted":  # inside the folder, but the manifest doesn't vouch for it
        rewrite_manifest(folder, drop=("weights.bin",))
    else:
        (folder / "weights.bin").rename(secret)  # the weights the graph wants now lie outside
        if how == "symlink":
            (folder / "weights.bin").symlink_to(secret)
        rewrite_manifest(folder)
    secret = folder / "weights.bin" if how == "unlisted" else secret
    message = {
        "../secret.bin": "reads weights from '../secret.bin', outside the model folder: refusing to load it",
        "absolute": f"reads weights from '{secret}', outside the model folder",
        "symlink": f"weights.bin is a link to {secret}, outside the model folder: refusing to read it",
        "unlisted": "reads weights from 'weights.bin', which the manifest does not list",
    }[how]
    with reads, pytest.raises(ModelLoadError, match=re.escape(message)) as info:
        load(folder, provider="cpu")
    assert "\n" not in str(info.value)
    assert str(secret.resolve()) not in reads.paths and reads.sessions == 0


def test_external_data_inside_the_folder_loads_and_runs_the_same(crafted, short):
    folder, _ = crafted
    move_weights_to(folder, "weights.bin")
    rewrite_manifest(folder)
    assert (folder / "weights.bin").stat().st_size > (folder / "model.onnx").stat().st_size  # the weights did move
    moved = load(folder, provider="cpu")
    assert moved.generate("Hello there", max_new_tokens=8).token_ids == short.generate("Hello there", max_new_tokens=8).token_ids


@pytest.mark.parametrize("name", ["tokenizer.json", "manifest.json", "generation_config.json"])
def test_a_file_linked_from_outside_is_refused_before_it_is_read(crafted, reads, name):
    folder, secret = crafted
    shutil.move(folder / name, secret)
    (folder / name).symlink_to(secret)
    with reads, pytest.raises(ModelLoadError, match=f"{name} is a link to {re.escape(str(secret))}, outside the model folder"):
        load(folder, provider="cpu")
    assert str(secret.resolve()) not in reads.paths and reads.sessions == 0


def test_links_that_stay_inside_are_fine(crafted, tmp_path, short):
    folder, _ = crafted
    (folder / "merges.txt").rename(folder / "merges.real")
    (folder / "merges.txt").symlink_to("merges.real")  # a link within the folder
    rewrite_manifest(folder)
    (tmp_path / "elsewhere").symlink_to(folder)  # and the folder itself reached through a link
    assert load(tmp_path / "elsewhere", provider="cpu").generate("Hi", max_new_tokens=4).token_ids == short.generate("Hi", max_new_tokens=4).token_ids


def test_a_broken_graph_is_refused_before_onnxruntime(crafted, reads):
    folder, _ = crafted
    (folder / "model.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"junk" * 100)  # a length past the end
    rewrite_manifest(folder)
    with reads, pytest.raises(ModelLoadError, match="model.onnx is not a valid ONNX file"):
        load(folder, provider="cpu")
    assert reads.sessions == 0


def test_the_runtime_never_unpickles():
    # Nothing in the runtime can load a pickle: no pickle-family imports, no np.load
    # without allow_pickle=False (it unpickles object arrays otherwise), no eval or exec.
    forbidden = re.compile(r"\b(import pickle|from pickle|pickle\.|cPickle|dill|joblib|shelve|marshal|torch\.load|np\.load|numpy\.load|eval\(|exec\()")
    sources = sorted((ROOT / "runtime").glob("*.py"))
    assert len(sources) > 10
    for source in sources:
        hits = [
            line
            for line in source.read_text().splitlines()
            if forbidden.search(line) and not line.lstrip().startswith("#") and "allow_pickle=False" not in line
        ]
        assert not hits, f"{source.name}: {hits}"


def test_load_generate_stream_and_score_unpickle_nothing(exports, monkeypatch):
    import pickle

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the runtime unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)
    model = load(exports["deep_short"].onnx_dir, provider="cpu")
    model.generate(["Hello", "Hi there"], max_new_tokens=3)
    model.generate("Hello", num_beams=2, max_new_tokens=3)
    "".join(model.stream("Hello", do_sample=True, seed=1, max_new_tokens=3))
    model.score(["Hello there, general Kenobi"])
    assert calls == []


# --- bad input ---------------------------------------------------------------------


def test_empty_prompt_starts_from_bos_on_the_command_line(exports, tiny):
    folder = str(exports["tiny"].onnx_dir)
    want = tiny.generate("", max_new_tokens=5)
    assert want.prompt_token_ids == [50256]
    for argv, stdin in ((["",], b""), (["-"], b"")):
        result = cli("generate", "--model", folder, "--provider", "cpu", "--json", "--max-new-tokens", "5", *argv, stdin=stdin)
        assert result.code == 0, result.stderr
        (sequence,) = json.loads(result.stdout)["results"][0]["sequences"]
        assert sequence["token_ids"] == want.token_ids and sequence["text"] == want.text
    streamed = cli("generate", "--model", folder, "--provider", "cpu", "--max-new-tokens", "5", "")
    assert streamed.code == 0 and streamed.stdout == want.text + "\n"


def test_a_prompt_longer_than_the_context_is_refused_everywhere(exports, short):
    long = " ".join(["word"] * 70)  # 70 tokens for a 64-token context
    message = "the prompt is 70 tokens but the model's context (n_positions) is 64: shorten the prompt"
    with pytest.raises(UsageError, match=re.escape(message)):
        short.generate(long)
    with pytest.raises(UsageError, match=re.escape(message)):
        short.stream(long)
    with pytest.raises(UsageError, match=re.escape(message)):
        short.generate(["short", long])
    result = cli("generate", "--model", str(exports["deep_short"].onnx_dir), "--provider", "cpu", "--max-new-tokens", "1", "-", stdin=long.encode())
    assert (result.code, result.error_lines(), result.stdout) == (2, [f"gpt2onnx: error: {message}"], "")


HARD_TEXT = {
    "emoji": "I 🙂 you 👍🏽 👨‍👩‍👧 🏳️‍🌈",
    "cjk": "日本語のテキスト、中文文本，한국어 텍스트",
    "arabic": "مرحبا بالعالم",
    "hebrew": "שלום עולם",
    "bidi controls": "abc \u202eevil\u202c \u200fשלום\u200e end",
    "control characters": "a\x00b\x01c\x1b[31mred\x1b[0m\x7f\r\n\t\x0c\x08",
    "combining marks": "e\u0301 n\u0303 Z\u0324\u0354\u0367\u0311\u0353a\u0308\u0356\u032d",
    "specials": "\ufeffBOM \ufffd literal \uffff noncharacter \U0010ffff \u2028 line sep",
}


@pytest.mark.parametrize("text", HARD_TEXT.values(), ids=HARD_TEXT.keys())
def test_hard_text_round_trips_and_streams_whole_characters(tiny, text):
    tokenizer = tiny.tokenizer
    assert tokenizer.decode(tokenizer.encode(text)) == text
    stream = tiny.stream(text, max_new_tokens=16, do_sample=True, seed=3)
    deltas = list(stream)
    completion = stream.completion
    assert "".join(deltas) == completion.text == tokenizer.decode(completion.token_ids)
    offset = 0
    for delta in deltas:  # each delta is exactly the final text at its place: no character was cut
        assert completion.text[offset : offset + len(delta)] == delta
        offset += len(delta)
    if REPLACEMENT not in completion.text:
        assert not any(REPLACEMENT in d for d in deltas)
    # The command line prints the prompt and the same completion.
    result = cli("generate", "--model", str(tiny.folder), "--provider", "cpu", "--max-new-tokens", "16", "--do-sample", "--seed", "3", text)
    assert result.code == 0, result.stderr
    assert result.stdout == text + completion.text + "\n"


def test_lone_surrogates_are_refused_with_their_position(tiny):
    message = "the text is not valid Unicode: a lone surrogate U+D800 at character 2"
    for call in (lambda: tiny.generate("ab\ud800c"), lambda: tiny.stream("ab\ud800c"), lambda: tiny.score(["ab\ud800c d"]), lambda: tiny.tokenizer.encode("ab\ud800c")):
        with pytest.raises(UsageError, match=re.escape(message)):
            call()
    with pytest.raises(UsageError, match=r"stop string 'x\\udfff' is not valid Unicode"):
        tiny.generate("hi", stop_strings=["x\udfff"])
    with pytest.raises(UsageError, match="a prompt must be a str or a list of str, got bytes"):
        tiny.generate(b"hi")


def test_invalid_utf8_is_refused_with_its_byte_offset(exports):
    folder = str(exports["tiny"].onnx_dir)
    # Through a real process: Python turns argv's bad bytes into surrogate escapes.
    result = subprocess.run([CLI.encode(), b"generate", b"--model", folder.encode(), b"caf\xe9 au lait"], capture_output=True, timeout=120)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().strip() == "gpt2onnx: error: PROMPT 1 is not valid UTF-8 (byte 0xe9 at offset 3): convert it, e.g. with 'iconv -f latin1 -t utf-8'"
    cases = [
        (["-"], b"ok \xff\xfe", "standard input is not valid UTF-8 (byte 0xff at offset 3)"),
        (["-"], b"\xe6\x97", "standard input is not valid UTF-8 (byte 0xe6 at offset 0)"),  # cut mid-character
        (["--stop", "\udce9", "hi"], b"", "--stop is not valid UTF-8 (byte 0xe9 at offset 0)"),
        (["--bad-words", "x\udcff", "hi"], b"", "--bad-words is not valid UTF-8 (byte 0xff at offset 1)"),
        (["a", "b\udcc0"], b"", "PROMPT 2 is not valid UTF-8 (byte 0xc0 at offset 1)"),
    ]
    for argv, stdin, message in cases:
        result = cli("generate", "--model", folder, "--provider", "cpu", *argv, stdin=stdin)
        assert (result.code, result.error_lines()) == (2, [f"gpt2onnx: error: {message}: convert it, e.g. with 'iconv -f latin1 -t utf-8'"])
    score = cli("score", "--model", folder, "--provider", "cpu", "-", stdin=b"\x80")
    assert score.code == 2 and "standard input is not valid UTF-8 (byte 0x80 at offset 0)" in score.stderr
    fine = cli("generate", "--model", folder, "--provider", "cpu", "--json", "--max-new-tokens", "2", "-", stdin="café 🙂".encode())
    assert fine.code == 0 and json.loads(fine.stdout)["results"][0]["prompt"] == "café 🙂"


# --- one model, many threads ---------------------------------------------------------

JOBS = [
    dict(prompt="Hello there", max_new_tokens=12),
    dict(prompt="Once upon a time", max_new_tokens=20, do_sample=True, seed=1, temperature=0.7, top_k=20),
    dict(prompt="The quick brown fox", max_new_tokens=15, do_sample=True, seed=2, top_p=0.9),
    dict(prompt="A", max_new_tokens=8, do_sample=True, seed=3, temperature=1.5, top_k=0, min_p=0.01),
    dict(prompt="日本語 🙂", max_new_tokens=18, repetition_penalty=1.3, no_repeat_ngram_size=2),
    dict(prompt="", max_new_tokens=10, do_sample=True, seed=4, typical_p=0.9, stream=True),
    dict(prompt="Beams", max_new_tokens=10, num_beams=3, num_return_sequences=2),
    dict(prompt="Stream me", max_new_tokens=25, stream=True),
]


def run_job(model, job: dict):
    job = dict(job)
    prompt, streaming = job.pop("prompt"), job.pop("stream", False)
    if streaming:
        stream = model.stream(prompt, **job)
        text = "".join(stream)
        assert text == stream.completion.text
        sequences = stream.completion.sequences
    else:
        sequences = model.generate(prompt, **job).sequences
    return [(s.token_ids, s.text, s.finish_reason, s.score) for s in sequences]


def test_eight_threads_share_one_model_and_get_what_one_thread_gets(tiny):
    alone = [run_job(tiny, job) for job in JOBS]
    start = threading.Barrier(len(JOBS))
    together: list = [None] * len(JOBS)
    failures: list = []

    def worker(i):
        try:
            start.wait()
            together[i] = run_job(tiny, JOBS[i])
        except BaseException as e:  # reported below: an exception in a thread would vanish
            failures.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(JOBS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)
    assert together == alone
    assert len({tuple(r[0][0]) for r in alone}) == len(JOBS)  # eight different jobs, not one repeated


def test_cancelling_from_another_thread_stops_within_one_token(tiny):
    stream = tiny.stream("Cancel me from afar", max_new_tokens=500, eos_token_id=None)  # no early end: only the cancel stops it
    search = stream._run.search
    got_three = threading.Event()
    deltas: list[str] = []

    def consume():
        for delta in stream:
            deltas.append(delta)
            if len(deltas) == 3:
                got_three.set()

    thread = threading.Thread(target=consume)
    thread.start()
    assert got_three.wait(timeout=60)
    stream.close()  # from the main thread, while the consumer is generating
    made_at_cancel = search.timing.new_tokens  # read after: at most the token in progress can follow
    thread.join(timeout=60)
    assert not thread.is_alive()
    completion = stream.completion
    assert completion.finish_reason == "cancelled"
    assert made_at_cancel <= len(completion.token_ids) <= made_at_cancel + 1  # the token in progress, no more
    assert "".join(deltas) == completion.text == tiny.tokenizer.decode(completion.token_ids)
    # The model is unharmed: its next run equals the same run on a freshly loaded model,
    # and the cancelled tokens were that run's first ones.
    settings = dict(max_new_tokens=len(completion.token_ids) + 5, eos_token_id=None)
    after = tiny.generate("Cancel me from afar", **settings)
    assert after.token_ids == load(tiny.folder, provider="cpu").generate("Cancel me from afar", **settings).token_ids
    assert after.token_ids[: len(completion.token_ids)] == completion.token_ids and after.finish_reason == "length"


def test_close_on_the_consuming_thread_still_finishes_at_once(tiny):
    stream = tiny.stream("Close me", max_new_tokens=100)
    first = next(stream)
    stream.close()
    assert stream.completion.finish_reason == "cancelled" and stream.completion.text.startswith(first)
    assert list(stream) == []


# --- the README's troubleshooting table ------------------------------------------------


def _messages(exports, tmp_path, gpt1) -> list[str]:
    """The one-line messages of the errors a user meets, produced for real."""
    tiny = exports["tiny"].onnx_dir
    out = []

    def refused(call):
        try:
            call()
        except Exception as e:  # noqa: BLE001 - every error's message is wanted
            out.append(str(e))
        else:
            raise AssertionError("expected an error")

    def copy(name, source=tiny):
        return shutil.copytree(source, tmp_path / name)

    def edit(folder, change, name="manifest.json"):
        manifest = json.loads((folder / name).read_text())
        change(manifest)
        (folder / name).write_text(json.dumps(manifest))

    broken = copy("broken")
    refused(lambda: load(tmp_path / "nothing"))
    refused(lambda: load(broken / "model.onnx"))
    vocab = (broken / "vocab.json").read_bytes()
    (broken / "vocab.json").write_bytes(vocab.replace(b"a", b"b", 1))  # same size, other bytes
    refused(lambda: load(broken))
    (broken / "vocab.json").write_bytes(vocab[:100])
    refused(lambda: load(broken))
    (broken / "vocab.json").unlink()
    refused(lambda: load(broken))
    edit(broken, lambda m: m.update(format_version=99))
    refused(lambda: load(broken))
    (broken / "manifest.json").write_text("{")
    refused(lambda: load(broken))
    (broken / "manifest.json").unlink()
    refused(lambda: load(broken))
    linked = copy("linked")
    (linked / "tokenizer.json").rename(tmp_path / "tokenizer.json")
    (linked / "tokenizer.json").symlink_to(tmp_path / "tokenizer.json")
    refused(lambda: load(linked))
    short = exports["deep_short"].onnx_dir
    outside, unlisted = copy("outside", short), copy("unlisted", short)
    move_weights_to(outside, "../weights.bin")
    rewrite_manifest(outside)
    refused(lambda: load(outside))
    move_weights_to(unlisted, "weights.bin")
    rewrite_manifest(unlisted, drop=("weights.bin",))
    refused(lambda: load(unlisted))
    (unlisted / "model.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f")
    rewrite_manifest(unlisted)
    refused(lambda: load(unlisted))
    mixed = copy("mixed")
    edit(mixed, lambda m: m["model"].update(vocab_size=1000))
    refused(lambda: load(mixed))
    edit(mixed, lambda m: m["model"].update(vocab_size=50257, n_layer=3))
    refused(lambda: load(mixed, provider="cpu"))
    checkpoint = str(exports["tiny"].checkpoint)  # export plans refused before any work
    refused(lambda: export_model(checkpoint, tmp_path / "kv8-fp16", plan=GraphPlan(weights="float16", kv_cache_dtype="int8")))
    refused(lambda: export_model(checkpoint, tmp_path / "kv8-plain", plan=GraphPlan(graph="optimum", kv_cache_dtype="int8")))
    model = load(tiny, provider="cpu")
    refused(lambda: model.generate("word " * 1100))
    refused(lambda: model.generate("x", top_p=0))
    refused(lambda: model.generate("x", max_new_tokens=-1))
    refused(lambda: model.generate("x", max_new_token=5))
    refused(lambda: model.generate("x", num_return_sequences=2))
    refused(lambda: model.generate("x\ud800"))
    # A classifier export, asked for the other task or given texts it can't classify.
    classifier_dir, classifier_checkpoint = tmp_path / "classifier", str(make_classifier(tmp_path / "classifier-checkpoint", 2, EOS))
    refused(lambda: export_model(classifier_checkpoint, tmp_path / "int8-classifier", plan=GraphPlan(weights="int8")))
    export_model(classifier_checkpoint, classifier_dir)
    classifier = load(classifier_dir, provider="cpu")
    refused(lambda: classifier.generate("x"))
    refused(lambda: model.classify(["x"]))
    refused(lambda: classifier.classify("x"))
    refused(lambda: classifier.classify(["fine", ""]))
    refused(lambda: classifier.classify(["word" + " word" * 199]))
    refused(lambda: ClassifierSession(tiny / "model.onnx", classifier.info, provider="cpu"))
    relabelled = copy("relabelled", classifier_dir)
    edit(relabelled, lambda m: m["model"].update(labels=["yes", "no"]))
    refused(lambda: load(relabelled, provider="cpu"))
    edit(relabelled, lambda m: m["model"].pop("labels"))
    refused(lambda: load(relabelled, provider="cpu"))
    edit(relabelled, lambda m: m["model"].update(labels=["a", "b", "c"], pad_token_id=None))
    refused(lambda: load(relabelled, provider="cpu"))
    padless = Path(shutil.copytree(classifier_checkpoint, tmp_path / "padless"))  # pad tokens the export can't use
    edit(padless, lambda m: m.update(pad_token_id=60000), name="config.json")
    refused(lambda: export_model(str(padless), tmp_path / "padless-onnx"))
    edit(padless, lambda m: m.update(pad_token_id=None, eos_token_id=None), name="config.json")
    edit(padless, lambda m: m.update(eos_token=None), name="tokenizer_config.json")
    refused(lambda: export_model(str(padless), tmp_path / "padless-onnx"))
    # Checkpoints of the GPT family the export refuses, before any work.
    gpt1_checkpoint = str(gpt1.checkpoint)
    refused(lambda: export_model(gpt1_checkpoint, tmp_path / "gpt1-plain", plan=GraphPlan(graph="optimum")))
    refused(lambda: export_model(gpt1_checkpoint, tmp_path / "gpt1-kv8", plan=GraphPlan(kv_cache_dtype="int8")))
    narrow = Path(shutil.copytree(gpt1.checkpoint, tmp_path / "gpt1-narrow"))
    edit(narrow, lambda m: m.update(n_head=16), name="config.json")  # head_dim 4
    refused(lambda: export_model(str(narrow), tmp_path / "gpt1-narrow-onnx"))
    other = Path(shutil.copytree(exports["tiny"].checkpoint, tmp_path / "token-classifier"))
    edit(other, lambda m: m.update(architectures=["GPT2ForTokenClassification"]), name="config.json")
    refused(lambda: export_model(str(other), tmp_path / "token-classifier-onnx"))
    edit(other, lambda m: m.update(architectures=["GPT2LMHeadModel"], add_cross_attention=True), name="config.json")
    refused(lambda: export_model(str(other), tmp_path / "cross-attention-onnx"))
    for argv, stdin in [
        (["generate", "--model", str(tiny), "-"], b"\xff"),
        (["generate", "--model", str(tiny), "--frobnicate", "hi"], b""),
        (["generate", "--model", str(tiny), "--provider", "cuda", "hi"], b""),  # a message only where CUDA is missing
    ]:
        result = cli(*argv, stdin=stdin)
        assert_clean(result)
        out += [line.split(": error: ", 1)[1] for line in result.error_lines()]
    return out


# Rows that can't be produced here: the export command's (test_export.py runs them),
# CUDA's where CUDA works, and the message of an unexpected failure.
FROM_SOURCE = ("(export)", "CUDA was asked for", "GPT2ONNX_DEBUG")


def test_every_troubleshooting_row_quotes_a_real_message(exports, tmp_path, gpt1):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 20
    messages = _messages(exports, tmp_path, gpt1)
    source = "".join(p.read_text() for folder in ("cli", "runtime", "export") for p in (ROOT / folder).glob("*.py"))
    matched = 0
    for row in rows:
        quote = re.match(r"\| `([^`]+)`", row).group(1)
        pieces = quote.split("…")  # "…" stands for what varies: a path, a number, a name
        if any(all(piece in m for piece in pieces) for m in messages):
            matched += 1
        else:
            assert any(marker in row for marker in FROM_SOURCE), f"README troubleshooting row {quote!r} matches no message the runtime gave"
            assert all(piece in source for piece in pieces), f"README troubleshooting row {quote!r} is in no source file"
    assert matched >= len(rows) - 6
