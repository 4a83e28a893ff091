"""Editors built from a settings dataclass: one input per field that carries a
:class:`~tlstudio.ml.setting.SettingInfo` (label, help text, range), laid out in a
:class:`~tlstudio.gui.training.reflow.ReflowGrid`. The augmentation and training-options
editors of the Train panel are :class:`SettingsForm` subclasses.

Kinds of input, by the field: ``choices`` -> combo box; ``bool`` -> check box; a
``tuple`` -> two spin boxes (min – max); ``int`` -> spin box; ``float`` -> spin box
(``log``: :class:`SciSpinBox`). ``off`` is shown at the minimum; for a field that may be
None the minimum means None.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from tlstudio.gui.training.reflow import ReflowGrid
from tlstudio.ml.setting import SettingInfo, settings_of


class SciSpinBox(QDoubleSpinBox):
    """A spin box for values spanning decades (learning rate, weight decay): shows
    ``3e-04``-style text and steps through 1, 2, 3, 5 × 10^k."""

    def __init__(self, minimum: float, maximum: float, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(minimum, maximum)
        nice = [m * 10.0**e for e in range(-8, 3) for m in (1, 2, 3, 5)]
        self._nice = [v for v in nice if minimum <= v <= maximum]

    def textFromValue(self, value: float) -> str:
        return "0" if value == 0 else f"{value:.3g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:  # type: ignore[override]
        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok = t == "" or t[-1] in "eE.-+" or t.lower().endswith(("e-", "e+"))
            state = QValidator.State.Intermediate if ok else QValidator.State.Invalid
            return state, text, pos
        if self.minimum() <= v <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:
        v = self.value()
        if steps > 0:
            bigger = [x for x in self._nice if x > v * (1 + 1e-9)]
            if bigger:
                self.setValue(bigger[min(steps, len(bigger)) - 1])
        elif steps < 0:
            smaller = [x for x in self._nice if x < v * (1 - 1e-9)]
            if smaller:
                self.setValue(smaller[max(steps, -len(smaller))])
            elif self.minimum() == 0:
                self.setValue(0.0)


def set_combo_data(combo: QComboBox, value: Any, label: str | None = None) -> None:
    """Select the item holding ``value`` (added, labelled ``label``, if there is none)."""
    index = combo.findData(value)
    if index < 0:
        combo.addItem(label or str(value), value)
        index = combo.count() - 1
    combo.setCurrentIndex(index)


class _Pair(QWidget):
    """Two spin boxes for a (min, max) range."""

    def __init__(self, low: QDoubleSpinBox, high: QDoubleSpinBox):
        super().__init__()
        self.low, self.high = low, high
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(low)
        row.addWidget(QLabel("–"))
        row.addWidget(high)
        row.addStretch(1)


def _kind(f: dataclasses.Field[Any], info: SettingInfo) -> str:
    text = str(f.type)
    if info.choices:
        return "choice"
    if text.startswith("bool"):
        return "bool"
    if text.startswith("tuple"):
        return "pair"
    if text.startswith("int"):
        return "int"
    return "log" if info.log else "float"


class SettingsForm(QWidget):
    """Inputs for the labelled fields of dataclass ``cls`` (``names``: only these, in
    this order). ``changed(name)`` follows every edit, by the user or by code."""

    changed = Signal(str)

    def __init__(
        self,
        cls: type,
        names: tuple[str, ...] | None = None,
        *,
        max_columns: int = 2,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.cls = cls
        self.grid = ReflowGrid(max_columns)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.grid)
        known = dict((f.name, (f, info)) for f, info in settings_of(cls))
        self._fields = {n: known[n] for n in (names if names is not None else known)}
        self._inputs: dict[str, QWidget] = {}
        self._labels: dict[str, QWidget] = {}
        self._task = ""
        for name, (f, info) in self._fields.items():
            self._inputs[name] = self._make(name, f, info)
        for name, (_f, info) in self._fields.items():
            w = self._inputs[name]
            w.setToolTip(info.help)
            if isinstance(w, QCheckBox) and self._dependent(name):
                continue  # it labels the row of the field that needs it
            host = self._inputs.get(info.needs)
            if isinstance(host, QCheckBox) and self._fields[info.needs][1].label == info.label:
                label: QWidget = host
            elif isinstance(w, QCheckBox):
                self.grid.add_cell(None, w)
                continue
            else:
                label = QLabel(info.label)
                label.setToolTip(info.help)
            self._labels[name] = label
            self.grid.add_cell(label, w)
        self._sync_enabled()

    # -- values ---------------------------------------------------------------------
    def widget(self, name: str) -> QWidget:
        """The input of field ``name`` (for a (min, max) field: the pair's container,
        with ``.low`` and ``.high`` spin boxes)."""
        return self._inputs[name]

    def label(self, name: str) -> QWidget | None:
        return self._labels.get(name)

    def names(self) -> list[str]:
        return list(self._fields)

    def value(self, name: str) -> Any:
        f, info = self._fields[name]
        w = self._inputs[name]
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, _Pair):
            return tuple(sorted((w.low.value(), w.high.value())))
        assert isinstance(w, (QSpinBox, QDoubleSpinBox))
        v = w.value()
        if info.off and v == w.minimum() and "None" in str(f.type):
            return None
        return v

    def set_value(self, name: str, value: Any) -> None:
        w = self._inputs[name]
        if isinstance(w, QComboBox):
            set_combo_data(w, value)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, _Pair):
            w.low.setValue(float(value[0]))
            w.high.setValue(float(value[1]))
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.setValue(w.minimum() if value is None else value)  # type: ignore[arg-type]

    def values(self) -> dict[str, Any]:
        return {name: self.value(name) for name in self._fields}

    def set_values(self, config: Any) -> None:
        """Fill every input from the same-named attributes of ``config``."""
        for name in self._fields:
            self.set_value(name, getattr(config, name))

    def inputs(self) -> list[QWidget]:
        """Every input widget (spin boxes of pairs one by one)."""
        out: list[QWidget] = []
        for w in self._inputs.values():
            out += [w.low, w.high] if isinstance(w, _Pair) else [w]
        return out

    def add_row(self, label: str, widget: QWidget, tip: str = "") -> QLabel:
        """An extra input that is not a field of the dataclass (the caller reads it)."""
        lab = QLabel(label)
        lab.setToolTip(tip or widget.toolTip())
        self.grid.add_cell(lab, widget)
        return lab

    # -- enabling -------------------------------------------------------------------
    def set_task(self, task: str) -> None:
        """Fields that apply to other tasks only are disabled."""
        self._task = task
        self._sync_enabled()

    def _dependent(self, name: str) -> bool:
        label = self._fields[name][1].label
        return any(i.needs == name and i.label == label for _f, i in self._fields.values())

    def _sync_enabled(self) -> None:
        for name, (_f, info) in self._fields.items():
            on = not info.tasks or self._task in info.tasks
            host = self._inputs.get(info.needs)
            if isinstance(host, QCheckBox):
                on = on and host.isChecked()
            self._inputs[name].setEnabled(on)
            label = self._labels.get(name)
            if label is not None and not isinstance(label, QCheckBox):
                label.setEnabled(on)

    # -- building -------------------------------------------------------------------
    def _make(self, name: str, f: dataclasses.Field[Any], info: SettingInfo) -> QWidget:
        kind = _kind(f, info)
        emit = lambda *_: self._edited(name)  # noqa: E731
        if kind == "choice":
            combo = QComboBox()
            for value, text in info.choices:
                combo.addItem(text, value)
            combo.currentIndexChanged.connect(emit)
            return combo
        if kind == "bool":
            box = QCheckBox(info.label)
            box.toggled.connect(emit)
            return box
        if kind == "pair":
            low, high = self._spin(info, "float"), self._spin(info, "float")
            for s in (low, high):
                s.valueChanged.connect(emit)
            assert isinstance(low, QDoubleSpinBox) and isinstance(high, QDoubleSpinBox)
            return _Pair(low, high)
        spin = self._spin(info, kind)
        spin.valueChanged.connect(emit)
        return spin

    @staticmethod
    def _spin(info: SettingInfo, kind: str) -> QSpinBox | QDoubleSpinBox:
        lo, hi = info.range if info.range is not None else (0, 1e9)
        spin: QSpinBox | QDoubleSpinBox
        if kind == "int":
            spin = QSpinBox()
            spin.setRange(int(lo), int(min(hi, 2**31 - 1)))
            spin.setSingleStep(max(1, int(info.step)))
        elif kind == "log":
            spin = SciSpinBox(lo, hi)
        else:
            spin = QDoubleSpinBox()
            spin.setDecimals(info.decimals)
            spin.setRange(lo, hi)
            spin.setSingleStep(info.step)
        if info.suffix:
            spin.setSuffix(info.suffix)
        if info.off:
            spin.setSpecialValueText(info.off)
        spin.setToolTip(info.help)
        return spin

    def _edited(self, name: str) -> None:
        self._sync_enabled()
        self.changed.emit(name)
