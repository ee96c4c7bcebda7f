"""The app's decoding settings and presets, and their QSettings round trip.

Names are Hugging Face's GenerationConfig names, so what the panel shows is
what `model.generate(**settings)` would take. Each field's meaning, range,
default and step are its setting's desktop view in the settings table
(runtime/settings.py), where the app's differences are explained. Nothing
here knows about widgets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PySide6.QtCore import QSettings

from gpt2onnx.runtime.settings import SETTINGS


def _default(name: str):
    return SETTINGS[name].default_for("desktop")


@dataclass(frozen=True)
class DecodingSettings:
    """What a writer can set; each field is the setting of that name (the defaults are the
    Balanced sampling preset)."""

    max_new_tokens: int = _default("max_new_tokens")
    do_sample: bool = _default("do_sample")  # with num_beams > 1: beam sampling
    temperature: float = _default("temperature")
    top_k: int = _default("top_k")
    top_p: float = _default("top_p")
    min_p: float = _default("min_p")  # 0: off (GenerationConfig's None)
    repetition_penalty: float = _default("repetition_penalty")
    no_repeat_ngram_size: int = _default("no_repeat_ngram_size")
    num_beams: int = _default("num_beams")
    seed: int = _default("seed")  # -1: a new one each time
    stop_strings: str = _default("stop_strings")  # the strings joined by "|"

    def generation_kwargs(self) -> dict:
        """Keyword arguments for Model.config(): HF names, with 'off' values left out."""
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,  # with beams too: beam sampling
            "num_beams": self.num_beams,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "stop_strings": tuple(s for s in self.stop_strings.split("|") if s),
        }
        if kwargs["do_sample"]:
            kwargs |= {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
            kwargs["min_p"] = self.min_p or None
        if self.num_beams > 1:
            kwargs["early_stopping"] = True
        return kwargs


PRESETS: dict[str, DecodingSettings] = {
    "Greedy": DecodingSettings(do_sample=False, repetition_penalty=1.2, no_repeat_ngram_size=3),
    "Beam search": DecodingSettings(do_sample=False, num_beams=4, repetition_penalty=1.0, no_repeat_ngram_size=3),
    "Balanced sampling": DecodingSettings(),
    "Creative": DecodingSettings(temperature=1.1, top_p=0.98, min_p=0.05, repetition_penalty=1.05),
}
DEFAULT_PRESET = "Balanced sampling"


def preset_of(settings: DecodingSettings) -> str | None:
    """The preset these settings equal, if any (seed, length and stop strings don't count)."""
    keep = {"seed": settings.seed, "max_new_tokens": settings.max_new_tokens, "stop_strings": settings.stop_strings}
    for name, preset in PRESETS.items():
        if dataclasses.replace(preset, **keep) == settings:
            return name
    return None


def save_decoding(store: QSettings, settings: DecodingSettings) -> None:
    for field in dataclasses.fields(DecodingSettings):
        store.setValue(f"decoding/{field.name}", getattr(settings, field.name))


def load_decoding(store: QSettings) -> DecodingSettings:
    """The saved settings; a missing or unreadable value falls back to its default."""
    values = {}
    defaults = PRESETS[DEFAULT_PRESET]
    for field in dataclasses.fields(DecodingSettings):
        default = getattr(defaults, field.name)
        raw = store.value(f"decoding/{field.name}", default)
        try:
            if isinstance(default, bool):  # INI files give back "true"/"false" strings
                values[field.name] = raw if isinstance(raw, bool) else str(raw).lower() == "true"
            else:
                values[field.name] = type(default)(raw)
        except (TypeError, ValueError):
            values[field.name] = default
    return DecodingSettings(**values)
