"""One settings schema: every generation setting is defined once (runtime/settings.py), and
each front end shows the settings the table says it does, with the table's bounds.

GenerationConfig refuses just outside each range and takes its closed ends; the
`generate` command has a flag for each of its settings whose help states the range;
the server's request models have a field for each, whose pydantic bounds (annotated_types'
Ge/Gt/Le/Lt) are the table's for the server; the desktop app's DecodingSettings has a field
for each, and its spin boxes the table's desktop ranges, steps and defaults. Each check
returns the problems it finds, and is shown to find a missing setting and other bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import annotated_types
import pytest
from pydantic import BaseModel, Field

from gpt2onnx.runtime import GenerationConfig, UsageError
from gpt2onnx.runtime.commands import Parser, add_parsers
from gpt2onnx.runtime.settings import INF, SETTINGS, UNSET, Setting, View
from gpt2onnx.serve import protocol
from gpt2onnx.serve.protocol import ChatRequest, CompletionRequest, Float, check_request

NUMBERS = [s for s in SETTINGS.values() if s.type in (int, float)]
# What a config needs for a value to be judged alone (num_return_sequences > 1 needs sampling).
ALONGSIDE = {"num_return_sequences": {"do_sample": True}}
# The generate command's arguments that are not settings.
CLI_OTHERS = {"help", "prompts", "model", "provider", "json", "no_verify", "threads"}
# Chat's own OpenAI names where they differ from completions' (the table's serve views say how they map).
CHAT_FIELDS = {"max_new_tokens": ("max_tokens", "max_completion_tokens"), "logprobs": ("top_logprobs",)}
# Request fields with bounds that are not settings: OpenAI's best_of (only best_of == n is accepted).
SERVE_OTHERS = {"best_of"}


# ----- the table -----

def test_the_table_is_every_generation_config_field_with_its_default():
    fields = {f.name: f.default for f in dataclasses.fields(GenerationConfig)}
    assert set(fields) == {s.name for s in SETTINGS.values() if s.config}
    assert {name: SETTINGS[name].default for name in fields} == fields
    assert [s.name for s in SETTINGS.values() if not s.config] == ["seed"]  # generate(seed=...)


def test_each_setting_has_one_line_and_each_difference_its_reason():
    for setting in SETTINGS.values():
        assert setting.meaning and "\n" not in setting.meaning, setting.name
        for front, view in setting.views().items():
            differs = setting.bounds(front) != setting.bounds() or setting.default_for(front) != setting.default
            assert view.why or not differs, f"{setting.name}: the {front} view differs without a reason"
            # An OpenAI name is a mapping, written once in the table.
            if front == "serve" and setting.field() != setting.name:
                assert view.maps, f"{setting.name}: the server's {setting.field()} has no documented mapping"
    with pytest.raises(ValueError, match="without saying why"):
        Setting("x", float, 1.0, "a setting", low=0, high=1, cli=View(high=0.5))


# ----- GenerationConfig -----

def _outside(setting: Setting) -> list:
    low, high, low_open, high_open = setting.bounds()
    step = 1 if setting.type is int else 1e-9
    out = [] if low == -INF else [low if low_open else low - step]
    out += [high if high_open else high + step] if high != INF else []
    if setting.type is float:
        out += [math.nan, math.inf, 10**400]
    return out


def _inside(setting: Setting) -> list:
    low, high, low_open, high_open = setting.bounds()
    step = 1 if setting.type is int else 1e-9
    values = [low + step if low_open else low] if low != -INF else [-1e300]
    values += [high - step if high_open else high] if high != INF else [10**30 if setting.type is int else 1e300]
    return values


@pytest.mark.parametrize("setting", [s for s in NUMBERS if s.config], ids=lambda s: s.name)
def test_generation_config_checks_the_tables_bounds(setting):
    for value in _inside(setting):
        assert getattr(GenerationConfig(**ALONGSIDE.get(setting.name, {}), **{setting.name: value}), setting.name) == value
    for value in _outside(setting):
        message = f"{setting.name} must be {setting.describe()}, got "
        with pytest.raises(UsageError) as refused:
            GenerationConfig(**ALONGSIDE.get(setting.name, {}), **{setting.name: value})
        assert str(refused.value).startswith(message), (value, str(refused.value))
    if setting.optional:
        assert getattr(GenerationConfig(**{setting.name: None}), setting.name) is None


@pytest.mark.parametrize("setting", [s for s in SETTINGS.values() if s.choices], ids=lambda s: s.name)
def test_generation_config_takes_exactly_the_tables_choices(setting):
    for choice in setting.choices:
        assert getattr(GenerationConfig(**{setting.name: choice}), setting.name) == choice
    for wrong in (1, "maybe", None):
        with pytest.raises(UsageError, match=f"{setting.name} must be "):
            GenerationConfig(**{setting.name: wrong})


# ----- the command line -----

def generate_parser() -> argparse.ArgumentParser:
    subparsers = Parser(prog="gpt2onnx").add_subparsers()
    add_parsers(subparsers)
    return subparsers.choices["generate"]


def cli_problems(parser: argparse.ArgumentParser) -> list[str]:
    """What the generate command says otherwise than the table: a missing flag, other bounds, a flag the table lacks."""
    problems = []
    actions = {a.dest: a for a in parser._actions}
    for setting in (s for s in SETTINGS.values() if s.cli is not None):
        action = actions.get(setting.name)
        if action is None or setting.flag() not in action.option_strings:
            problems.append(f"the command line lacks {setting.flag()} ({setting.name})")
            continue
        default = None if setting.cli.default is UNSET else setting.cli.default
        if setting.type is tuple:
            ok = isinstance(action, argparse._AppendAction)
        elif setting.choices == (True, False):
            ok = isinstance(action, argparse.BooleanOptionalAction)
        elif setting.choices:
            ok = action.choices == setting.choices if action.type is None else [action.type(str(c).lower()) for c in setting.choices] == list(setting.choices)
        else:
            ok = action.type is setting.type and action.default == default and setting.describe("cli") in action.help
        if not ok:
            problems.append(f"{setting.flag()} states other bounds, type or default than the table ({setting.describe('cli') if setting.low is not None else setting.choices})")
    problems += [f"{a.option_strings} is not in the table" for dest, a in actions.items() if dest not in SETTINGS and dest not in CLI_OTHERS]
    return problems


def test_the_command_line_has_every_setting_with_the_tables_bounds():
    assert cli_problems(generate_parser()) == []


def test_the_command_line_check_finds_a_missing_flag_and_other_bounds():
    parser = argparse.ArgumentParser()
    parser.add_argument("--temperature", dest="temperature", type=float, help="divides the scores; in [0, 2]")
    problems = cli_problems(parser)
    assert "the command line lacks --top-p (top_p)" in problems
    assert any(p.startswith("--temperature states other bounds") for p in problems)


def test_a_flag_out_of_range_gets_the_tables_message():
    args = generate_parser().parse_args(["--top-p", "0", "--temperature", "2.5", "hi"])
    assert args.temperature == 2.5  # the command line keeps the runtime's range: (0, inf]
    with pytest.raises(UsageError, match=r"top_p must be in \(0, 1\], got 0.0"):
        GenerationConfig(top_p=args.top_p)


# ----- the server -----

def _bounds(info) -> tuple:
    """(low, high, low_open, high_open) from a pydantic field's metadata; an unstated end is infinite."""
    low, high, low_open, high_open = -INF, INF, False, False
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Gt):
            low, low_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            high = m.le
        elif isinstance(m, annotated_types.Lt):
            high, high_open = m.lt, True
    return low, high, low_open, high_open


def serve_problems(models: dict[str, type[BaseModel]]) -> list[str]:
    """What the request models say otherwise than the table, for each endpoint's model."""
    problems = []
    for endpoint, model in models.items():
        fields = model.model_fields
        for setting in (s for s in SETTINGS.values() if s.serve is not None):
            names = CHAT_FIELDS.get(setting.name, (setting.field(),)) if endpoint == "chat" else (setting.field(),)
            for name in names:
                if name not in fields:
                    problems.append(f"{endpoint} lacks {name} ({setting.name})")
                elif setting.type in (int, float):
                    want, got = setting.bounds("serve"), _bounds(fields[name])
                    # A closed infinite end is no bound at all (pydantic states none).
                    want = (want[0], want[1], want[2] and want[0] != -INF, want[3] and want[1] != INF)
                    if got != want:
                        problems.append(f"{endpoint}'s {name} is bounded {got}, the table says {want}")
                    if setting.type is int and any(isinstance(v, float) for v in got[:2] if abs(v) != INF):
                        problems.append(f"{endpoint}'s {name} has float bounds: a client would send 1.0")
        settings = {n for s in SETTINGS.values() if s.serve for n in (s.field(), *CHAT_FIELDS.get(s.name, ()))}
        for name, info in fields.items():
            if name not in settings | SERVE_OTHERS and _bounds(info) != (-INF, INF, False, False):
                problems.append(f"{endpoint}'s {name} is bounded but is no setting in the table")
    return problems


def test_the_server_has_every_setting_with_the_tables_bounds():
    assert serve_problems({"completions": CompletionRequest, "chat": ChatRequest}) == []
    assert CompletionRequest.model_fields["n"].default == SETTINGS["num_return_sequences"].default
    assert protocol.MAX_TOKENS == SETTINGS["max_new_tokens"].serve.high and protocol.MAX_LOGPROBS == SETTINGS["logprobs"].serve.high


def test_the_server_check_finds_a_missing_field_and_other_bounds():
    class Wider(CompletionRequest):
        top_p: Float | None = Field(None, gt=0, le=2)

    class Bare(BaseModel):
        temperature: Float | None = Field(None, ge=0, le=2)

    problems = serve_problems({"completions": Wider, "chat": Bare})
    assert any(p.startswith("completions's top_p is bounded") for p in problems)
    assert "chat lacks max_tokens (max_new_tokens)" in problems and "chat lacks top_logprobs (logprobs)" in problems


def test_the_server_copies_hf_names_and_maps_openais_once():
    mapped = {s.name for s in SETTINGS.values() if s.serve and (s.serve.maps or s.field() != s.name)}
    assert set(protocol.AS_IS) | mapped | {"seed"} == {s.name for s in SETTINGS.values() if s.serve}
    assert mapped == {"max_new_tokens", "stop_strings", "num_return_sequences", "temperature", "sequence_bias", "logprobs"}


def test_logit_bias_values_keep_the_tables_server_range():
    bias = SETTINGS["sequence_bias"]
    low, high, _, _ = bias.bounds("serve")
    for value in (low, high, 0.5):
        check_request(CompletionRequest(prompt="Hi", logit_bias={"10": value}))
    for value in (low - 0.5, high + 0.5, math.nan):
        with pytest.raises(UsageError, match=rf"logit_bias values must be in \[{low}, {high}\]"):
            check_request(CompletionRequest(prompt="Hi", logit_bias={"10": value}))


# ----- the desktop app -----

def desktop_problems(settings_class, panel) -> list[str]:
    """What the app's settings and panel say otherwise than the table."""
    from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QLineEdit, QSpinBox

    problems = []
    fields = {f.name: f.default for f in dataclasses.fields(settings_class)}
    shown = {s.name: s for s in SETTINGS.values() if s.desktop is not None}
    problems += [f"the app's settings lack {name}" for name in shown.keys() - fields.keys()]
    problems += [f"the app's {name} is not in the table" for name in fields.keys() - shown.keys()]
    for name, setting in shown.items():
        if name in fields and fields[name] != setting.default_for("desktop"):
            problems.append(f"the app's {name} defaults to {fields[name]!r}, the table says {setting.default_for('desktop')!r}")
        if setting.type in (int, float):
            box = panel.fields.get(name)
            if box is None:
                problems.append(f"the panel lacks a box for {name}")
                continue
            low, high, low_open, high_open = setting.bounds("desktop")
            kind = QSpinBox if setting.type is int else QDoubleSpinBox
            stated = (type(box), box.minimum(), box.maximum(), box.singleStep())
            if stated != pytest.approx((kind, low, high, setting.desktop.step)) or low_open or high_open:
                problems.append(f"the panel's {name} box is {stated[1:]}, the table says {(low, high, setting.desktop.step)}")
        elif not isinstance(getattr(panel, name, None), QCheckBox if setting.type is bool else QLineEdit):
            problems.append(f"the panel lacks a control for {name}")
    return problems


@pytest.fixture
def panel(qtbot):
    pytest.importorskip("PySide6")  # the desktop extra
    from gpt2onnx.desktop.controls import DecodingPanel
    from gpt2onnx.desktop.settings import DecodingSettings

    widget = DecodingPanel(DecodingSettings())
    qtbot.addWidget(widget)
    return widget


def test_the_desktop_has_every_setting_with_the_tables_ranges_and_defaults(panel):
    from gpt2onnx.desktop.settings import DecodingSettings

    assert desktop_problems(DecodingSettings, panel) == []
    assert panel.settings() == DecodingSettings()  # the boxes hold the defaults as they are


def test_the_desktop_check_finds_a_missing_setting_and_other_ranges(panel):
    from gpt2onnx.desktop.settings import DecodingSettings

    panel.fields["temperature"].setMaximum(3.0)
    lacking = dataclasses.make_dataclass("Lacking", [(f.name, f.type, f.default) for f in dataclasses.fields(DecodingSettings) if f.name != "top_p"])
    problems = desktop_problems(lacking, panel)
    assert "the app's settings lack top_p" in problems
    assert any(p.startswith("the panel's temperature box is") for p in problems)

