"""The decoding panel: presets plus every setting a writer would touch.

Each field edits one DecodingSettings field (Hugging Face's GenerationConfig
names, shown as labels); choosing a preset fills them, and editing any field
shows "Custom".
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from .settings import PRESETS, DecodingSettings, preset_of

CUSTOM = "Custom"

# field -> (label, minimum, maximum, step or decimals, tooltip)
NUMBERS = {
    "max_new_tokens": ("max_new_tokens", 1, 1024, 1, "tokens one completion adds at most"),
    "temperature": ("temperature", 0.05, 3.0, 0.05, "< 1 safer, > 1 wilder"),
    "top_k": ("top_k", 0, 1000, 1, "keep the k most likely tokens (0: all)"),
    "top_p": ("top_p", 0.05, 1.0, 0.01, "keep the most likely tokens holding this much probability"),
    "min_p": ("min_p", 0.0, 1.0, 0.01, "drop tokens less than this fraction as likely as the best (0: off)"),
    "repetition_penalty": ("repetition_penalty", 0.5, 3.0, 0.05, "> 1 discourages tokens already in the text"),
    "no_repeat_ngram_size": ("no_repeat_ngram_size", 0, 10, 1, "no n-gram of this size appears twice (0: off)"),
    "num_beams": ("num_beams", 1, 8, 1, "beam search when > 1 (no sampling; the best beam streams in when it is done)"),
    "seed": ("seed", -1, 2**31 - 1, 1, "sampling seed; -1 picks a new one each time"),
}


class DecodingPanel(QWidget):
    """Emits `changed(DecodingSettings)` whenever a value changes."""

    changed = Signal(object)

    def __init__(self, settings: DecodingSettings):
        super().__init__()
        self._loading = False
        form = QFormLayout(self)
        self.preset = QComboBox()
        self.preset.addItems([*PRESETS, CUSTOM])
        self.preset.currentTextChanged.connect(self._preset_chosen)
        form.addRow("Preset", self.preset)
        self.do_sample = QCheckBox("do_sample")
        self.do_sample.setToolTip("sample (else greedy, or beam search with num_beams > 1)")
        self.do_sample.toggled.connect(self._edited)
        form.addRow("", self.do_sample)
        self.fields: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name, (label, low, high, step, tip) in NUMBERS.items():
            box = QSpinBox() if isinstance(step, int) and isinstance(low, int) else QDoubleSpinBox()
            box.setRange(low, high)
            box.setSingleStep(step)
            if isinstance(box, QDoubleSpinBox):
                box.setDecimals(2)
            box.setToolTip(tip)
            box.valueChanged.connect(self._edited)
            self.fields[name] = box
            form.addRow(label, box)
        self.stop_strings = QLineEdit()
        self.stop_strings.setPlaceholderText("e.g. \\n\\n|THE END")
        self.stop_strings.setToolTip("stop before any of these; separate several with |; \\n is a line break")
        self.stop_strings.textChanged.connect(self._edited)
        form.addRow("stop_strings", self.stop_strings)
        self.set_settings(settings)

    def settings(self) -> DecodingSettings:
        values = {name: box.value() for name, box in self.fields.items()}
        values = {k: (int(v) if isinstance(self.fields[k], QSpinBox) else round(float(v), 2)) for k, v in values.items()}
        stops = self.stop_strings.text().replace("\\n", "\n")
        return DecodingSettings(do_sample=self.do_sample.isChecked(), stop_strings=stops, **values)

    def set_settings(self, settings: DecodingSettings) -> None:
        self._loading = True
        try:
            for name, box in self.fields.items():
                box.setValue(getattr(settings, name))
            self.do_sample.setChecked(settings.do_sample)
            self.stop_strings.setText(settings.stop_strings.replace("\n", "\\n"))
            self.preset.setCurrentText(preset_of(settings) or CUSTOM)
        finally:
            self._loading = False
        self.changed.emit(self.settings())

    def _preset_chosen(self, name: str) -> None:
        if self._loading or name == CUSTOM:
            return
        current = self.settings()
        keep = {"seed": current.seed, "max_new_tokens": current.max_new_tokens, "stop_strings": current.stop_strings}
        self.set_settings(dataclasses.replace(PRESETS[name], **keep))

    def _edited(self, *_args) -> None:
        if self._loading:
            return
        settings = self.settings()
        self._loading = True
        self.preset.setCurrentText(preset_of(settings) or CUSTOM)
        self._loading = False
        self.changed.emit(settings)
