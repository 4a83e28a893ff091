"""Graphics items that draw a model's prediction over the canvas image.

Like the label items (:mod:`.items`), they live in scene coordinates = image
pixels (x right, y down, origin at the image's top-left corner). They look
"predicted", never like labels: dashed outlines, hollow rings, captions with
a dark background and the score, and a mask overlay with its own opacity.
None of them accepts mouse buttons, and the tools hit-test only the label
items, so the tools keep editing labels underneath.

:class:`PredictionLayer` owns all of them for one :class:`CanvasView`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsRectItem,
    QLabel,
    QStyleOptionGraphicsItem,
    QWidget,
)

from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.runs import Prediction

from .items import (
    HALO_PEN,
    NO_CLASS_COLOR,
    MaskOverlayItem,
    cosmetic_pen,
    point_color,
    region_paths,
)

if TYPE_CHECKING:  # pragma: no cover
    from PySide6.QtWidgets import QGraphicsScene

# above the labels of the same kind, below tool feedback (Z_TOOL = 100)
Z_PRED_MASK, Z_PRED_BOXES, Z_PRED_LANDMARKS = 12, 40, 45
DASH = Qt.PenStyle.DashLine


def dashed_pen(color: QColor | str, width: float = 2.0) -> QPen:
    """A cosmetic dashed pen (``width`` screen px) with a flat cap, for predicted shapes."""
    pen = cosmetic_pen(color, width, DASH)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    return pen


class PredictionCaptionItem(QGraphicsItem):
    """A caption such as "circle 0.87": italic white text on a dark rounded rectangle
    with a dashed class-colour border, constant screen size. Its top-left corner sits
    at the item's position (below a box's bottom-left corner, unlike label captions,
    which sit above the top-left corner)."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._text = ""
        self._color = QColor(NO_CLASS_COLOR)
        self._font = QFont()
        self._font.setPointSizeF(8.5)
        self._font.setItalic(True)
        self._rect = QRectF()

    @property
    def text(self) -> str:
        return self._text

    def set_text(self, text: str, color: QColor | str) -> None:
        self.prepareGeometryChange()
        self._text, self._color = text, QColor(color)
        fm = QFontMetricsF(self._font)
        self._rect = QRectF(-1, 1, fm.horizontalAdvance(text) + 10, fm.height() + 2)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-1, -1, 1, 1)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if not self._text:
            return
        painter.setBrush(QColor(20, 20, 20, 190))
        painter.setPen(dashed_pen(self._color, 1.2))
        painter.drawRoundedRect(self._rect, 3, 3)
        painter.setPen(QColor("white"))
        painter.setFont(self._font)
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self._text)


class PredictedBoxItem(QGraphicsRectItem):
    """One predicted box (image px): a dashed class-colour outline over a dark halo and
    a "class 0.87" caption under its bottom-left corner."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setZValue(Z_PRED_BOXES)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setBrush(Qt.BrushStyle.NoBrush)
        self.class_id: int | None = None
        self.score = 0.0
        self._caption = PredictionCaptionItem(self)

    def set_box(
        self, xyxy: Sequence[float], score: float, color: QColor | str, class_name: str,
        class_id: int | None = None,
    ) -> None:  # fmt: skip
        """Show the box ``xyxy`` (x1, y1, x2, y2 in image px) with its score in [0, 1]."""
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        self.class_id, self.score = class_id, float(score)
        self.setRect(QRectF(QPointF(x1, y1), QPointF(x2, y2)))
        self.setPen(dashed_pen(color, 2))
        self._caption.setPos(x1, y2)
        self._caption.set_text(f"{class_name} {self.score:.2f}", color)

    @property
    def caption(self) -> str:
        return self._caption.text

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        painter.setPen(HALO_PEN)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self.rect())
        super().paint(painter, option, widget)


class _RingItem(QGraphicsEllipseItem):
    """A hollow ring of constant screen size (a predicted landmark point)."""

    def __init__(self, parent: QGraphicsItem):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setBrush(Qt.BrushStyle.NoBrush)
        self.setZValue(1)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        painter.setPen(cosmetic_pen(QColor(0, 0, 0, 120), self.pen().widthF() + 1.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(self.rect())
        super().paint(painter, option, widget)
        # a thin white inner ring keeps it visible on a background of its own colour
        painter.setPen(cosmetic_pen(QColor(255, 255, 255, 190), 1))
        painter.drawEllipse(self.rect().adjusted(2.5, 2.5, -2.5, -2.5))


class PredictedLandmarksItem(QGraphicsItem):
    """Predicted points of one template instance: hollow rings in each point's colour
    (as labelled points) with a thin white inner ring, radius and opacity growing with
    the confidence, and the template's skeleton dashed. Points with confidence below the
    threshold are hidden, and so are the skeleton edges that touch them."""

    MIN_RADIUS_PX, MAX_RADIUS_PX = 4.0, 9.0  # ring radius at confidence 0 and 1, screen px

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_PRED_LANDMARKS)
        self.points: tuple[tuple[float, float, float], ...] = ()
        self.template: LandmarkTemplate | None = None
        self.threshold = 0.0
        self._rings: list[_RingItem] = []
        self._lines: list[QGraphicsLineItem] = []

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        pass  # the children draw

    def set_points(
        self, points: Sequence[Sequence[float]], template: LandmarkTemplate | None
    ) -> None:
        """Show ``points`` = (x, y, confidence) in image px, in ``template``'s order."""
        self.points = tuple((float(x), float(y), float(c)) for x, y, c in points)
        self.template = template
        self._rebuild()

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self._rebuild()

    def shown_points(self) -> list[int]:
        """Indices of the points drawn (confidence ≥ threshold)."""
        return [i for i, p in enumerate(self.points) if p[2] >= self.threshold]

    def ring(self, index: int) -> _RingItem:
        return self._rings[index]

    def _rebuild(self) -> None:
        shown = set(self.shown_points())
        names = self.template.points if self.template else ()
        edges = [
            (a, b)
            for a, b in (self.template.skeleton if self.template else ())
            if a in shown and b in shown
        ]
        while len(self._lines) < len(edges):
            line = QGraphicsLineItem(self)
            line.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            line.setPen(dashed_pen(QColor(255, 255, 255, 200), 1.5))
            self._lines.append(line)
        for line, (a, b) in zip(self._lines, edges, strict=False):
            pa, pb = self.points[a], self.points[b]
            line.setLine(QLineF(pa[0], pa[1], pb[0], pb[1]))
            line.setVisible(True)
        for line in self._lines[len(edges) :]:
            line.setVisible(False)
        while len(self._rings) < len(self.points):
            self._rings.append(_RingItem(self))
        for i, (ring, (x, y, conf)) in enumerate(zip(self._rings, self.points, strict=False)):
            if i not in shown:
                ring.setVisible(False)
                continue
            c = min(max(conf, 0.0), 1.0)
            r = self.MIN_RADIUS_PX + (self.MAX_RADIUS_PX - self.MIN_RADIUS_PX) * c
            ring.setRect(-r, -r, 2 * r, 2 * r)
            ring.setPos(x, y)
            color = point_color(i)
            color.setAlphaF(0.6 + 0.4 * c)
            ring.setPen(cosmetic_pen(color, 2.5))
            name = names[i] if i < len(names) else f"point {i + 1}"
            ring.setToolTip(f"{name} (predicted, confidence {conf:.2f})")
            ring.setVisible(True)
        for ring in self._rings[len(self.points) :]:
            ring.setVisible(False)


class PredictedMaskItem(MaskOverlayItem):
    """A predicted label map in class colours, with its own opacity (default 0.35),
    above the labelled mask. Its region outlines are a separate
    :class:`MaskOutlineItem`, so they stay opaque."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setZValue(Z_PRED_MASK)
        self.setOpacity(0.35)


class MaskOutlineItem(QGraphicsItem):
    """Dashed class-colour outlines (over a dark halo) of the regions of a label map,
    in image px: what makes a predicted mask look predicted next to a labelled one."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_PRED_MASK + 1)
        self.outlines: list[tuple[int, QPainterPath]] = []  # (class id, path)
        self._colors: dict[int, QColor] = {}
        self._rect = QRectF()

    def set_label_map(self, label: np.ndarray | None, colors: Mapping[int, QColor]) -> None:
        """Outline every region of the H×W ``label`` (None: nothing), each in the colour
        of its value (class ids; object numbers for predicted objects)."""
        self.prepareGeometryChange()
        paths = region_paths(label) if label is not None else {}
        self.outlines, self._colors = list(paths.items()), dict(colors)
        self._rect = QRectF()
        for _value, path in self.outlines:
            self._rect = self._rect.united(path.boundingRect())
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-2, -2, 2, 2)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for cid, path in self.outlines:
            painter.setPen(HALO_PEN)
            painter.drawPath(path)
            painter.setPen(dashed_pen(self._colors.get(cid, NO_CLASS_COLOR), 2))
            painter.drawPath(path)


class ProbabilityLabel(QLabel):
    """The corner overlay of a classification: the top classes with their
    probabilities, best first ("Predicted" heading, one class per line)."""

    TOP = 3

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("predictionProbabilities")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setStyleSheet(
            "QLabel { background: rgba(20, 20, 20, 185); color: white;"
            " border: 1px dashed rgba(255, 255, 255, 150); border-radius: 4px; padding: 4px 8px; }"
        )
        self.ranked: list[tuple[int, float]] = []
        self.hide()

    def set_probabilities(
        self, probs: Mapping[int, float], colors: Mapping[int, QColor], names: Mapping[int, str]
    ) -> None:
        """Show the :attr:`TOP` most probable classes (class id -> probability in [0, 1])."""
        self.ranked = sorted(probs.items(), key=lambda kv: -kv[1])[: self.TOP]
        rows = [
            f'<tr><td><span style="color:{colors.get(c, NO_CLASS_COLOR).name()}">&#9679;</span>'
            f"&nbsp;{_html(names.get(c, f'class {c}'))}</td>"
            f'<td align="right">&nbsp;&nbsp;{p:.0%}</td></tr>'
            for c, p in self.ranked
        ]
        self.setText(
            '<i>Predicted</i><table cellspacing="0" cellpadding="0">' + "".join(rows) + "</table>"
        )
        self.adjustSize()


class PredictionLayer:
    """Everything drawn for one prediction on a canvas: boxes, landmark rings, the
    predicted mask and the probability overlay. The canvas calls it; it never reads
    the store itself."""

    def __init__(self, scene: QGraphicsScene, viewport_host: QWidget):
        self.scene = scene
        self.prediction: Prediction | None = None
        self.task: str | None = None
        self.template: LandmarkTemplate | None = None
        self.visible = True
        self.threshold = 0.5
        self.boxes: list[PredictedBoxItem] = []
        self.landmarks = PredictedLandmarksItem()
        self.mask = PredictedMaskItem()
        self.mask_outline = MaskOutlineItem()
        self.object_captions: list[PredictionCaptionItem] = []  # instances: one per object
        self._captions_shown = 0
        self.probabilities = ProbabilityLabel(viewport_host)
        scene.addItem(self.landmarks)
        scene.addItem(self.mask)
        scene.addItem(self.mask_outline)
        self._colors: dict[int, QColor] = {}
        self._names: dict[int, str] = {}
        self._size = (0, 0)
        self._apply_visibility()

    @property
    def image_id(self) -> int | None:
        return None if self.prediction is None else self.prediction.image_id

    def set_classes(self, colors: Mapping[int, QColor], names: Mapping[int, str]) -> None:
        """Class colours and names (class id -> ...); redraws if they changed."""
        if dict(colors) == self._colors and dict(names) == self._names:
            return
        self._colors, self._names = dict(colors), dict(names)
        if self.prediction is not None:
            self._build()

    def set_prediction(
        self,
        prediction: Prediction | None,
        task: str | None,
        template: LandmarkTemplate | None,
        image_size: tuple[int, int],
    ) -> None:
        """Show ``prediction`` of a ``task`` run over an image of ``image_size``
        (width, height) px; None clears everything."""
        self.prediction, self.task, self.template = prediction, task, template
        self._size = image_size
        self._build()

    def clear(self) -> None:
        self.set_prediction(None, None, None, (0, 0))

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        self._apply_visibility()

    def set_threshold(self, threshold: float) -> None:
        """Hide boxes and landmark points scoring below ``threshold`` (0–1)."""
        self.threshold = min(max(float(threshold), 0.0), 1.0)
        self.landmarks.set_threshold(self.threshold)
        if self.task == "instances":
            self._build_objects()
        self._apply_visibility()

    def shown_boxes(self) -> list[PredictedBoxItem]:
        """The predicted box items currently drawn."""
        return [b for b in self.boxes if b.isVisible()]

    def _color(self, class_id: int | None) -> QColor:
        if class_id is None:
            return QColor(NO_CLASS_COLOR)
        return QColor(self._colors.get(int(class_id), NO_CLASS_COLOR))

    def _name(self, class_id: int) -> str:
        return self._names.get(int(class_id), f"class {class_id}")

    def shown_objects(self) -> list[str]:
        """The captions of the predicted objects drawn ("circle 0.93"), best first."""
        if not (self.visible and self.prediction is not None):
            return []
        return [c.text for c in self.object_captions[: self._captions_shown]]

    def _build_objects(self) -> bool:
        """Draw an instance prediction's objects scoring ≥ the threshold: each filled
        and outlined (dashed) in its class colour, captioned under its box. False when
        the prediction is no instance prediction (nothing drawn)."""
        pred = self.prediction
        w, h = self._size
        numbers = pred.mask if pred is not None and self.task == "instances" else None
        if pred is None or numbers is None or numbers.shape != (h, w):
            self._captions_shown = 0
            return False
        objects = [
            o for o in pred.payload.get("objects", []) if float(o["score"]) >= self.threshold
        ]
        self._captions_shown = len(objects)
        lut = np.zeros(max([int(numbers.max()), *(int(o["number"]) for o in objects)]) + 1,
                       np.uint16)  # fmt: skip
        colors = {}
        for k, o in enumerate(objects):
            n, cid = int(o["number"]), int(o["class_id"])
            lut[n] = n
            colors[n] = self._color(cid)
            if k == len(self.object_captions):
                caption = PredictionCaptionItem()
                caption.setZValue(Z_PRED_BOXES)
                self.scene.addItem(caption)
                self.object_captions.append(caption)
            caption = self.object_captions[k]
            x1, _y1, _x2, y2 = (float(v) for v in o["xyxy"])
            caption.setPos(x1, y2)
            caption.set_text(f"{self._name(cid)} {float(o['score']):.2f}", colors[n])
        shown = lut[numbers]
        if (self.mask.boundingRect().width(), self.mask.boundingRect().height()) != (w, h):
            self.mask.set_size(w, h)
        self.mask.set_colors(colors)
        self.mask.set_label_map(shown)
        self.mask_outline.set_label_map(shown, colors)
        return True

    def _build(self) -> None:
        pred, task = self.prediction, self.task
        payload = pred.payload if pred is not None else {}
        tasks = (task or "").split(",")  # a multi-task run draws each of its tasks
        boxes = payload.get("boxes", []) if task == "detect" else []
        while len(self.boxes) > len(boxes):
            self.scene.removeItem(self.boxes.pop())
        while len(self.boxes) < len(boxes):
            item = PredictedBoxItem()
            self.scene.addItem(item)
            self.boxes.append(item)
        for item, b in zip(self.boxes, boxes, strict=True):
            cid = int(b["class_id"])
            item.set_box(b["xyxy"], float(b["score"]), self._color(cid), self._name(cid), cid)
        points = payload.get("points", []) if "landmarks" in tasks else []
        self.landmarks.set_points(points, self.template)
        self.landmarks.set_threshold(self.threshold)
        w, h = self._size
        mask = pred.mask if (pred is not None and "segment" in tasks) else None
        if self._build_objects():
            pass
        elif mask is not None and mask.shape == (h, w):
            if (self.mask.boundingRect().width(), self.mask.boundingRect().height()) != (w, h):
                self.mask.set_size(w, h)
            self.mask.set_colors(self._colors)
            self.mask.set_label_map(mask)
            self.mask_outline.set_label_map(mask, self._colors)
        else:
            self.mask.set_size(0, 0)
            self.mask_outline.set_label_map(None, {})
        if "classify" in tasks and payload.get("probs"):
            probs = {int(k): float(v) for k, v in payload["probs"].items()}
            self.probabilities.set_probabilities(probs, self._colors, self._names)
        else:
            self.probabilities.ranked = []
        self._apply_visibility()

    def _apply_visibility(self) -> None:
        on = self.visible and self.prediction is not None
        for item in self.boxes:
            item.setVisible(on and item.score >= self.threshold)
        self.landmarks.setVisible(on)
        self.mask.setVisible(on)
        self.mask_outline.setVisible(on)
        for k, caption in enumerate(self.object_captions):
            caption.setVisible(on and k < self._captions_shown)
        self.probabilities.setVisible(on and bool(self.probabilities.ranked))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
