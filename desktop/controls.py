"""The decoding panel: presets plus every setting a writer would touch.

Each field edits one DecodingSettings field (Hugging Face's GenerationConfig
names, shown as labels); choosing a preset fills them, and editing any field
shows "Custom". Each box's range, step and tooltip come from the settings
table (runtime/settings.py): the setting's desktop view and meaning.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from gpt2onnx.runtime.settings import SETTINGS, Setting

from .settings import PRESETS, DecodingSettings, preset_of

CUSTOM = "Custom"
# The number boxes: every setting the app shows that is a number, in the table's order.
NUMBERS = tuple(s.name for s in SETTINGS.values() if s.desktop is not None and s.type in (int, float))


def tooltip(setting: Setting) -> str:
    """The setting's meaning, and what the app does differently (its view's hint)."""
    return f"{setting.meaning} ({setting.desktop.hint})" if setting.desktop.hint else setting.meaning


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
        self.do_sample.setToolTip(tooltip(SETTINGS["do_sample"]))
        self.do_sample.toggled.connect(self._edited)
        form.addRow("", self.do_sample)
        self.fields: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name in NUMBERS:
            setting = SETTINGS[name]
            low, high, _, _ = setting.bounds("desktop")  # closed: the table's desktop views say so (SPIN_BOX)
            box = QSpinBox() if setting.type is int else QDoubleSpinBox()
            if isinstance(box, QDoubleSpinBox):
                box.setDecimals(2)  # before the range: Qt rounds the range to the decimals
            box.setRange(low, high)
            box.setSingleStep(setting.desktop.step)
            box.setToolTip(tooltip(setting))
            box.valueChanged.connect(self._edited)
            self.fields[name] = box
            form.addRow(name, box)
        self.stop_strings = QLineEdit()
        self.stop_strings.setPlaceholderText("e.g. \\n\\n|THE END")
        self.stop_strings.setToolTip(tooltip(SETTINGS["stop_strings"]))
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
