"""Freeze depth: a backbone's stages drawn as a row of boxes, with a slider.

Freeze depth is the number of leading stages (counted from the input, drawn left to
right) whose weights stay fixed: all stages = feature extraction, 0 = full fine-tuning.
Frozen boxes are grey, trainable ones coloured; the head (always trained) closes the row.

Per-stage parameter counts are not part of :class:`~tlstudio.ml.backbones.BackboneSpec`,
so they are counted once per backbone by building the architecture on torch's ``meta``
device (shapes only, no memory; 10-300 ms) in a pool thread, and cached for the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from tlstudio.gui.workers.jobs import start_job

_STAGE_COUNTS: dict[str, list[int]] = {}

FROZEN = "frozen"
TRAINABLE = "trainable"

_FROZEN_FILL = QColor("#d9d9d9")
_FROZEN_TEXT = QColor("#7a7a7a")
_TRAIN_FILL = QColor("#f28e2b")
_HEAD_FILL = QColor("#59a14f")


class StageBox(NamedTuple):
    """What one box shows: the stage's name, output channels and stride."""

    name: str
    channels: int
    stride: int


class StageLike(Protocol):
    """A stage as :class:`~tlstudio.ml.architectures.StageInfo` and :class:`StageBox`
    describe it."""

    @property
    def name(self) -> str: ...
    @property
    def channels(self) -> int: ...
    @property
    def stride(self) -> int: ...


def stage_parameter_counts(name: str) -> list[int]:
    """Parameter elements per stage of backbone ``name``, from the input.

    Builds the architecture on the meta device (CPU for families that cannot) and splits
    it exactly as :func:`tlstudio.ml.backbones.build_backbone` does. Call it off the GUI
    thread; results are cached per process."""
    cached = _STAGE_COUNTS.get(name)
    if cached is not None:
        return list(cached)
    from tlstudio.ml import backbones as B

    spec = B.get_spec(name)
    model = B.build_architecture(name, device="meta")
    stages = B._SPLITTERS[spec.family](model)  # the split build_backbone uses
    counts = [sum(p.numel() for p in stage.parameters()) for stage in stages]
    _STAGE_COUNTS[name] = counts
    return list(counts)


def format_params(n: float) -> str:
    """A parameter count for people: ``1.2 M``, ``640 k`` or ``12``."""
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.0f} k"
    return f"{int(n)}"


class StageRow(QWidget):
    """The boxes. Clicking a trainable box freezes up to and including it; clicking a
    frozen box makes it and everything above it trainable."""

    stage_clicked = Signal(int)  # the new freeze depth the click asks for

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._stages: list[StageBox] = []
        self._counts: list[int] | None = None
        self._depth = 0
        self.setMinimumHeight(66)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_stages(self, stages: Sequence[StageBox], counts: list[int] | None) -> None:
        self._stages = list(stages)
        self._counts = counts
        self.update()

    def set_counts(self, counts: list[int] | None) -> None:
        self._counts = counts
        self.update()

    def set_depth(self, depth: int) -> None:
        self._depth = depth
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, 70)

    def _rects(self) -> list[QRectF]:
        n = len(self._stages) + 1  # + head
        gap = 6.0
        w = (self.width() - 2 - gap * (n - 1)) / max(n, 1)
        h = self.height() - 2
        return [QRectF(1 + i * (w + gap), 1, w, h) for i in range(n)]

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rects = self._rects()
        total = sum(self._counts) if self._counts else 0
        base = QFont(self.font())
        small = QFont(base)
        small.setPointSizeF(max(base.pointSizeF() - 1.5, 6.5))
        bold = QFont(base)
        bold.setBold(True)
        for i, rect in enumerate(rects):
            head = i == len(self._stages)
            frozen = not head and i < self._depth
            fill = _HEAD_FILL if head else _FROZEN_FILL if frozen else _TRAIN_FILL
            p.setPen(QPen(fill.darker(130), 1))
            p.setBrush(fill)
            p.drawRoundedRect(rect, 5, 5)
            if self._counts and not head and total:
                # a bar along the bottom: this stage's share of the backbone's parameters
                share = self._counts[i] / total
                bar = QRectF(rect.left() + 4, rect.bottom() - 6, (rect.width() - 8) * share, 3)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(0, 0, 0, 90))
                p.drawRect(bar)
            text = _FROZEN_TEXT if frozen else QColor("white")
            p.setPen(text)
            inner = rect.adjusted(3, 3, -3, -8)
            third = inner.height() / 3
            top = QRectF(inner.left(), inner.top(), inner.width(), third)
            mid = top.translated(0, third)
            low = mid.translated(0, third)
            align = Qt.AlignmentFlag.AlignCenter
            p.setFont(bold)
            p.drawText(top, align, "head" if head else self._stages[i].name)
            p.setFont(small)
            if head:
                p.drawText(mid, align, "always")
                p.drawText(low, align, "trained")
            else:
                st = self._stages[i]
                p.drawText(mid, align, f"{st.channels} ch · /{st.stride}")
                p.drawText(
                    low,
                    align,
                    ("frozen" if frozen else "trains")
                    + (f" · {format_params(self._counts[i])}" if self._counts else ""),
                )
        p.end()

    def mousePressEvent(self, event) -> None:
        if not self.isEnabled() or event.button() != Qt.MouseButton.LeftButton:
            return
        for i, rect in enumerate(self._rects()[: len(self._stages)]):
            if rect.contains(event.position()):
                self.stage_clicked.emit(i if i < self._depth else i + 1)
                return


class FreezeStrip(QWidget):
    """The stage row, a slider 0..N for the freeze depth and the trainable-parameter count."""

    depth_changed = Signal(int)  # number of frozen leading stages, 0..N

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._name = ""
        self._stages: list[StageBox] = []
        self._num_params = 0
        self._counts: list[int] | None = None

        self.row = StageRow()
        self.row.setToolTip(
            "Backbone stages from the input (left) to the output. Grey stages are frozen "
            "(their pretrained weights stay fixed); orange ones are trained. Click a stage to "
            "move the boundary."
        )
        self.row.stage_clicked.connect(self.set_depth)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("freezeSlider")
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setPageStep(1)
        self.slider.setToolTip(
            "Freeze depth: how many stages, counted from the input, keep their pretrained "
            "weights. Far right = feature extraction (only the head trains); far left = full "
            "fine-tuning."
        )
        self.slider.valueChanged.connect(self._slider_moved)
        self.depth_label = QLabel()
        self.depth_label.setObjectName("freezeDepthLabel")
        self.params_label = QLabel()
        self.params_label.setObjectName("trainableParamsLabel")
        self.params_label.setToolTip(
            "Backbone parameters that the optimiser updates; the task head always trains "
            "and is not counted here."
        )
        ends = QHBoxLayout()
        left, right = QLabel("← full fine-tuning"), QLabel("feature extraction →")
        for lab in (left, right):
            lab.setStyleSheet("color: palette(mid);")
        ends.addWidget(left)
        ends.addStretch(1)
        ends.addWidget(right)
        info = QHBoxLayout()
        info.addWidget(self.depth_label)
        info.addStretch(1)
        info.addWidget(self.params_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.row)
        layout.addWidget(self.slider)
        layout.addLayout(ends)
        layout.addLayout(info)

    # -- backbone ---------------------------------------------------------------------
    def set_backbone(self, name: str, stages: Sequence[StageLike], num_params: int) -> None:
        """Show ``name``'s stages; keep the depth if it still fits (else clamp)."""
        old_n = len(self._stages)
        was_all = old_n > 0 and self.slider.value() == old_n
        self._name = name
        self._stages = [StageBox(s.name, s.channels, s.stride) for s in stages]
        self._num_params = int(num_params)
        self._counts = _STAGE_COUNTS.get(name)
        n = len(self._stages)
        self.slider.blockSignals(True)
        self.slider.setRange(0, n)
        if was_all:
            self.slider.setValue(n)
        self.slider.blockSignals(False)
        self.row.set_stages(self._stages, self._counts)
        if self._counts is None:
            start_job(
                lambda _token, _progress: stage_parameter_counts(name),
                context=self,
                succeeded=lambda counts: self._counts_ready(name, counts),
                needs_ml=True,
            )
        self._sync()
        self.depth_changed.emit(self.depth())

    def _counts_ready(self, name: str, counts: list[int]) -> None:
        if name != self._name or len(counts) != len(self._stages):
            return
        self._counts = list(counts)
        self.row.set_counts(self._counts)
        self._sync()

    # -- depth ----------------------------------------------------------------------
    def num_stages(self) -> int:
        return len(self._stages)

    def depth(self) -> int:
        """Frozen leading stages, 0..N."""
        return self.slider.value()

    def set_depth(self, depth: int | str) -> None:
        """Set the depth: an int 0..N (clamped) or ``"all"`` (= N)."""
        n = len(self._stages)
        value = n if depth == "all" else max(0, min(int(depth), n))
        self.slider.setValue(value)

    def freeze_value(self) -> int | str:
        """The depth as :attr:`TrainConfig.freeze` wants it: ``"all"`` for N, else an int."""
        d = self.depth()
        return "all" if d >= len(self._stages) else d

    def stage_states(self) -> list[str]:
        """``"frozen"`` or ``"trainable"`` per stage, from the input."""
        d = self.depth()
        return [FROZEN if i < d else TRAINABLE for i in range(len(self._stages))]

    def stage_counts(self) -> list[int] | None:
        """Parameters per stage once counted, else None."""
        return None if self._counts is None else list(self._counts)

    def trainable_parameters(self) -> int | None:
        """Backbone parameters left trainable at the current depth (None until counted)."""
        if self._counts is None:
            return None
        return sum(self._counts[self.depth() :])

    def trainable_text(self) -> str:
        return self.params_label.text()

    def _slider_moved(self, _value: int) -> None:
        self._sync()
        self.depth_changed.emit(self.depth())

    def _sync(self) -> None:
        d, n = self.depth(), len(self._stages)
        self.row.set_depth(d)
        if d >= n:
            what = "all stages frozen (feature extraction)"
        elif d == 0:
            what = "no stage frozen (full fine-tuning)"
        else:
            what = f"{d} of {n} stages frozen"
        self.depth_label.setText(what)
        total = sum(self._counts) if self._counts else self._num_params
        trainable = self.trainable_parameters()
        if trainable is None:
            self.params_label.setText(f"trainable parameters: counting… of {format_params(total)}")
        else:
            self.params_label.setText(
                f"trainable parameters: {format_params(trainable)} of {format_params(total)}"
            )
