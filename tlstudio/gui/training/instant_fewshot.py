"""The Train panel's "Instant (few-shot)" tab: with a handful of tagged images per class,
fit a prototype or logistic head on the backbone's cached features (seconds) and show
its predictions over the unlabelled images at once, least sure first ("label these
next").

The head is an ordinary run (:func:`tlstudio.ml.experiments.fit_sklearn_run`: saved as
a model, calibrated on val, scored on test), so it becomes the inspected run: the
Predictions dock, the canvas and the Inspect views show it. Backbone, weights and input
size come from the Train panel's settings. The work is a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` with its own project connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.cancel import CancelToken
from tlstudio.gui.state import AppState
from tlstudio.gui.training.job_tab import JobTab
from tlstudio.gui.workers.jobs import BackgroundJob, Progress

#: (head kind, what the user reads)
HEADS = (
    ("prototype", "Prototypes (nearest class mean)"),
    ("logreg", "Logistic regression"),
    ("linear_svm", "Linear SVM"),
    ("knn", "k nearest neighbours"),
)
IMAGE_ROLE = Qt.ItemDataRole.UserRole + 4


@dataclass(frozen=True)
class InstantResult:
    """What one instant fit produced (plain data, crosses threads)."""

    run_id: int
    metrics: dict[str, float]
    test: dict[str, Any] | None
    rows: list[tuple[int, str, str, float]]  # image id, file name, class, probability
    seconds: float


def fit_and_predict(
    root: str, backbone: str, weights: str, kind: str, input_size: int | None, device: str,
    token: CancelToken, progress: Progress,
) -> InstantResult:  # fmt: skip
    """Job: fit the head, predict the unlabelled images from cached features, read the
    predictions back."""
    from tlstudio.core.predictions import unlabelled_image_ids
    from tlstudio.core.project import Project
    from tlstudio.core.runs import RunStore
    from tlstudio.ml.experiments import fit_sklearn_run
    from tlstudio.ml.linear_heads import predict_cached

    t0 = time.perf_counter()
    with Project.open(root) as project:
        run_id, metrics = fit_sklearn_run(
            project, backbone, weights, kind, input_size, device=device, token=token,
            progress=lambda stage, d, t: progress(d, t, stage),
        )  # fmt: skip
        ids = unlabelled_image_ids(project, "classify")
        predict_cached(project, run_id, ids, device=device, token=token,
                       progress=lambda d, t: progress(d, t, "features unlabelled"))  # fmt: skip
        runs = RunStore(project)
        names = {c.id: c.name for c in project.classes()}
        rows = []
        for image_id in ids:
            pred = runs.prediction(run_id, image_id)
            if pred is None:
                continue
            cid = int(pred.payload["class_id"])
            rows.append((image_id, project.image(image_id).name, names.get(cid, str(cid)),
                         float(pred.score or 0.0)))  # fmt: skip
        test = runs.get(run_id).config.get("test")
    rows.sort(key=lambda r: r[3])
    return InstantResult(run_id, metrics, test, rows, time.perf_counter() - t0)


class InstantFewShotView(JobTab):
    """Head choice, the Instant button, progress, and the predictions list.
    ``open_image(image_id)`` on a double-click or Enter in the list."""

    message = Signal(str)
    open_image = Signal(int)

    def __init__(
        self, app_state: AppState, spec_source: Callable[[], Any], parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setObjectName("instantFewShot")
        self.app_state = app_state
        self._spec_source = spec_source
        self.result: InstantResult | None = None

        intro = QLabel(
            "With a few tagged images per class (5 is enough to start), fit a classifier on "
            "the backbone's features in seconds and see what it says about every untagged "
            "image. Backbone, weights and input size: the Train settings."
        )
        intro.setWordWrap(True)
        self.head_combo = QComboBox()
        self.head_combo.setObjectName("instantHeadCombo")
        for kind, text in HEADS:
            self.head_combo.addItem(text, kind)
        self.run_button = QPushButton("Instant (few-shot)")
        self.run_button.setObjectName("instantButton")
        self.run_button.setToolTip(
            "Fit the head on the tagged train images and predict the untagged ones"
        )
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m images")
        self.status = QLabel("Press Instant (few-shot).")
        self.status.setObjectName("instantStatus")
        self.status.setWordWrap(True)
        self.results = QListWidget()
        self.results.setObjectName("instantResults")
        self.results.setToolTip("Least sure first. Double-click or Enter: open in the Label view")
        row = QHBoxLayout()
        row.addWidget(QLabel("Head:"))
        row.addWidget(self.head_combo)
        row.addWidget(self.run_button)
        row.addStretch(1)
        busy = QHBoxLayout()
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(row)
        lay.addLayout(busy)
        lay.addWidget(self.status)
        lay.addWidget(self.results, 1)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.results.itemActivated.connect(self._activated)
        self._set_busy(False)

    def start(self) -> bool:
        """Fit the chosen head and predict the untagged images (in the background)."""
        project = self.app_state.project
        if project is None or self._job is not None:
            return False
        spec = self._spec_source()
        kind = str(self.head_combo.currentData())
        root, backbone, weights = str(project.root), spec.backbone, str(spec.weights)
        size, device = spec.input_size, str(spec.train.device)
        self.status.setText(f"Fitting a {self.head_combo.currentText().lower()} head on "
                            f"{backbone} features…")  # fmt: skip
        self._run(
            lambda token, progress: fit_and_predict(
                root, backbone, weights, kind, size, device, token, progress
            ),
            name="instant few-shot", failed="Could not fit", done=self._done,
        )  # fmt: skip
        return True

    # -- results -----------------------------------------------------------------------------

    def _done(self, job: BackgroundJob, result: InstantResult) -> None:
        self.result = result
        acc = result.metrics.get("accuracy")
        parts = [f"Run #{result.run_id}: {self.head_combo.currentText().lower()}"]
        if acc is not None:
            parts.append(f"val accuracy {acc:.2f}")
        if result.test:
            t_acc = result.test["metrics"].get("accuracy")
            if t_acc is not None:
                parts.append(f"test accuracy {t_acc:.2f} ({result.test['label']})")
        parts.append(f"{len(result.rows)} untagged images predicted in {result.seconds:.1f} s")
        self.results.clear()
        for image_id, name, cls, p in result.rows:
            item = QListWidgetItem(f"{name} → {cls}  {p:.0%}")
            item.setData(IMAGE_ROLE, image_id)
            self.results.addItem(item)
        self._ended(job, "; ".join(parts) + ". Least sure first.")
        self.app_state.set_run(result.run_id)
        self.app_state.predictions_changed.emit()
        self.message.emit(f"Few-shot run #{result.run_id} predicted {len(result.rows)} images")

    def _lock_inputs(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.head_combo.setEnabled(not busy)

    def _activated(self, item: QListWidgetItem) -> None:
        image_id = item.data(IMAGE_ROLE)
        if image_id is not None:
            self.open_image.emit(int(image_id))
