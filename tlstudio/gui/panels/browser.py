"""The image browser dock: a grid (or list) of thumbnails with status badges, filters
and next/previous navigation.

:class:`ImageListModel` knows only the *ids* that pass the filter (one indexed
query, a few ms even for 100,000 images) and fetches rows lazily in pages of
:data:`PAGE` when the view paints them, so opening a large project never waits
for rows or thumbnails. Thumbnails come from a
:class:`~tlstudio.gui.workers.thumbnails.ThumbnailLoader`; a placeholder icon is
shown until they arrive.

With a run chosen (``AppState.run_id``), the browser also filters and sorts by
that run's stored predictions (wrong / right / low confidence / not predicted;
most uncertain first) and marks rows ✓ / ✗ with the uncertainty. The statuses come
from :class:`~tlstudio.gui.panels.browser_statuses.PredictionStatuses` (computed off
the GUI thread); the model and delegate are in :mod:`.browser_model`.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.commands import SetDomains, SetSplits
from tlstudio.core.errors import TlsError
from tlstudio.core.prediction_query import UNCERTAIN, PredictionStatus
from tlstudio.core.project import SPLITS, Project
from tlstudio.gui.panels.browser_model import (
    GRID_CELL,
    GRID_ICON,
    LIST_ICON,
    GridDelegate,
    ImageListModel,
)
from tlstudio.gui.panels.browser_statuses import PredictionStatuses
from tlstudio.gui.panels.image_query import (
    ANY,
    NO_DOMAIN,
    NO_SPLIT,
    ORDER_NAMES,
    ORDERS,
    PREDICTION_NAMES,
    PREDICTIONS,
    STATUS_NAMES,
    STATUSES,
    ImageFilter,
    filtered_ids,
    next_matching,
)
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.thumbnails import ThumbnailLoader

NO_RUN_TIP = (
    "Choose a run in Inspect mode (the Run: picker) to filter and sort images by its predictions"
)

# Keys the browser handles itself (the window's actions add next/previous/unlabelled).
BROWSER_KEYS = [
    ("Up / Down / Left / Right", "Move to the neighbouring image (browser focused)"),
    ("Home / End", "First / last image in the browser (browser focused)"),
    ("Shift+click, Ctrl+click", "Select several images (for Set split)"),
    ("Menu key / right-click", "Set the split or the domain of the selected images"),
]


class BrowserPanel(QWidget):
    """Filters above a thumbnail grid; the current row is ``app_state.image_id``.

    The prediction filter and order apply to ``app_state.run_id``; they are disabled
    while no run is chosen."""

    count_changed = Signal(int, int)  # shown, total
    message = Signal(str)  # for the status bar

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.synchronous_thumbnails = False  # for the benchmark only
        self.model = ImageListModel(self)
        self.view = QListView()
        self.view.setObjectName("imageList")
        self.view.setModel(self.model)
        self.view.setItemDelegate(GridDelegate(self.model, self.view))
        self.view.setUniformItemSizes(True)  # no per-row size queries: 5,000 rows lay out fast
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().currentChanged.connect(self._current_changed)

        self.status = QComboBox()
        for s in STATUSES:
            self.status.addItem(STATUS_NAMES[s], s)
        self.split = QComboBox()
        self.split.addItem("Any split", ANY)
        for s in SPLITS:
            self.split.addItem(s, s)
        self.split.addItem("No split", NO_SPLIT)
        self.klass = QComboBox()
        self.klass.addItem("Any class", None)
        self.prediction = QComboBox()
        self.prediction.setObjectName("predictionFilter")
        for s in PREDICTIONS:
            self.prediction.addItem(PREDICTION_NAMES[s], s)
        self.order = QComboBox()
        self.order.setObjectName("browserOrder")
        for s in ORDERS:
            self.order.addItem(ORDER_NAMES[s], s)
        self.domain = QComboBox()
        self.domain.setObjectName("domainFilter")
        self.domain.setToolTip(
            "Show the images of one domain (site, scanner, batch…); set domains with "
            "right-click → Set domain…"
        )
        self._domain_names: list[str] = []
        self.search = QLineEdit()
        self.search.setPlaceholderText("File name contains…")
        self.search.setClearButtonEnabled(True)
        self.grid_button = QToolButton()
        self.grid_button.setText("Grid")
        self.grid_button.setCheckable(True)
        self.grid_button.setChecked(True)
        self.grid_button.setToolTip("Thumbnail grid (checked) or list")
        self.grid_button.toggled.connect(self.set_grid)
        self.count_label = QLabel()
        self._search_timer = QTimer(self, singleShot=True, interval=250)
        self._search_timer.timeout.connect(self._apply_filter)
        self._refresh_timer = QTimer(self, singleShot=True, interval=30)
        self._refresh_timer.timeout.connect(self._refresh_rows)
        self._class_names: list[tuple[int, str]] = []
        self.statuses = PredictionStatuses(app_state, self)
        self.statuses.changed.connect(self._statuses_changed)
        self.statuses.message.connect(self.message)

        top = QHBoxLayout()
        top.addWidget(self.status)
        top.addWidget(self.split)
        top.addWidget(self.klass)
        middle = QHBoxLayout()
        middle.addWidget(self.prediction)
        middle.addWidget(self.order, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.domain, 1)  # room for "Any domain" next to the search
        bottom.addWidget(self.search, 1)
        bottom.addWidget(self.grid_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addLayout(middle)
        lay.addLayout(bottom)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.count_label)
        for combo in self._combos():
            combo.currentIndexChanged.connect(self._apply_filter)
            # narrow docks: the combos shrink (eliding their text) instead of widening
            # the dock, whose width the canvas needs on a laptop
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(5)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.set_grid(True)
        self._enable_prediction_filters()

        app_state.project_opened.connect(self._project_opened)
        app_state.project_closed.connect(self._project_closed)
        app_state.image_changed.connect(self._select_image)
        app_state.data_changed.connect(self._data_changed)
        app_state.run_changed.connect(self._run_changed)
        app_state.predictions_changed.connect(self._predictions_changed)
        if app_state.project is not None:  # built after the project was opened
            self._project_opened(app_state.project)
            if app_state.run_id is not None:
                self._run_changed(app_state.run_id)

    def _combos(self) -> tuple[QComboBox, ...]:
        return (self.status, self.split, self.klass, self.prediction, self.order, self.domain)

    def sizeHint(self) -> QSize:
        return QSize(2 * GRID_CELL.width() + 40, 600)  # two thumbnails across

    # -- project ---------------------------------------------------------------------
    def _project_opened(self, project: Project) -> None:
        self._close_loader()
        loader = ThumbnailLoader(
            project.cache_dir,
            icon_size=GRID_ICON,
            synchronous=self.synchronous_thumbnails,
            parent=self,
        )
        self._reset_filters()
        self._update_classes()
        self._update_domains()
        self.statuses.forget()
        self.model.set_project(project, loader)
        self._enable_prediction_filters()
        self.statuses.ensure()
        self._update_count()
        if self.model.rowCount() and self.app_state.image_id is None:
            self.app_state.set_image(self.model.id_at(0))
        else:
            self._select_image(self.app_state.image_id)

    def _project_closed(self) -> None:
        self.statuses.forget()
        self.model.set_project(None, None)
        self._enable_prediction_filters()
        self._close_loader()
        self._update_classes()
        self._update_domains()
        self._update_count()

    def _close_loader(self) -> None:
        loader = self.model.loader
        if loader is not None:
            loader.shutdown()
            loader.deleteLater()

    def shutdown(self) -> None:
        """Stop thumbnail and prediction-status work (window closing)."""
        # an empty list from here on: the project closes next, and a synchronous repaint
        # meanwhile (the Train monitor's progress bar reset after a run) painted rows not
        # fetched yet: the query on the closed database raised inside the model's data(),
        # where PySide crashes (segfault)
        self.statuses.forget()
        self._close_loader()
        self.model.set_project(None, None)

    def reload(self) -> None:
        """Query rows again (after an import), keeping the current image."""
        self._update_classes()
        self._update_domains()
        self.model.reload()
        self._update_count()
        if self.app_state.image_id is None and self.model.rowCount():
            self.app_state.set_image(self.model.id_at(0))
        else:
            self._select_image(self.app_state.image_id)

    # -- filters -----------------------------------------------------------------------
    def current_filter(self) -> ImageFilter:
        return ImageFilter(
            status=self.status.currentData(),
            split=self.split.currentData(),
            class_id=self.klass.currentData(),
            text=self.search.text(),
            prediction=self.prediction.currentData(),
            order=self.order.currentData(),
            domain=self.domain.currentData(),
        )

    def set_filter(self, flt: ImageFilter) -> None:
        """Show the filter in the widgets and apply it (the prediction part only
        while a run is chosen)."""
        for combo, value in (
            (self.status, flt.status),
            (self.split, flt.split),
            (self.klass, flt.class_id),
            (self.prediction, flt.prediction),
            (self.order, flt.order),
            (self.domain, flt.domain),
        ):
            combo.blockSignals(True)
            self._set_combo(combo, value)
            combo.blockSignals(False)
        self.search.blockSignals(True)
        self.search.setText(flt.text)
        self.search.blockSignals(False)
        if self.app_state.run_id is None:
            self._reset_prediction_filters()
        self._apply_filter()

    @staticmethod
    def _set_combo(combo: QComboBox, value) -> None:
        i = combo.findData(value)
        combo.setCurrentIndex(max(i, 0))

    def _reset_filters(self) -> None:
        for combo in self._combos():
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)

    def _reset_prediction_filters(self) -> None:
        for combo in (self.prediction, self.order):
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)

    def _apply_filter(self) -> None:
        self._search_timer.stop()
        if self.app_state.project is None:
            return
        flt = self.current_filter()
        if flt.uses_predictions and not self.statuses.ready():
            # shown once the statuses arrive (_statuses_changed applies the filter)
            self.statuses.ensure()
            self._update_count()
            return
        self.model.set_filter(flt)
        self._update_count()
        self._select_image(self.app_state.image_id)

    def _update_count(self) -> None:
        project = self.app_state.project
        total = project.image_count() if project else 0
        shown = self.model.rowCount()
        text = f"{shown} of {total} images" if shown != total else f"{total} images"
        if project is not None and self.current_filter().uses_predictions:
            if not self.statuses.ready():
                text = f"Checking the predictions of run {self.app_state.run_id}…"
            elif self.statuses.key is not None:
                text += f" (predictions of run {self.statuses.key[1]})"
        self.count_label.setText(text)
        self.count_changed.emit(shown, total)

    # -- prediction statuses ----------------------------------------------------------
    def _enable_prediction_filters(self) -> None:
        """Prediction filter and order: usable only while a run is chosen."""
        run_id = self.app_state.run_id if self.app_state.project is not None else None
        on = run_id is not None
        if not on:
            self._reset_prediction_filters()
        self.prediction.setEnabled(on)
        self.order.setEnabled(on)
        if on:
            self.prediction.setToolTip(
                f"Compare run {run_id}'s stored predictions with the labels:\n"
                "wrong / right = disagrees / agrees with the labels,\n"
                f"low confidence = uncertainty ≥ {UNCERTAIN:g},\n"
                "not predicted = the run has no prediction for the image"
            )
            self.order.setToolTip(
                f"Most uncertain first: the images run {run_id} was least sure about, "
                "the ones worth labelling or checking next"
            )
        else:
            self.prediction.setToolTip(NO_RUN_TIP)
            self.order.setToolTip(NO_RUN_TIP)

    def _run_changed(self, run_id: object) -> None:
        self.statuses.forget()
        if run_id is None:
            self.model.set_statuses(None)
        # else the old run's marks stay until the new statuses replace them (~0.1 s)
        self._enable_prediction_filters()
        self._apply_filter()
        self.statuses.ensure()

    def _predictions_changed(self) -> None:
        self.statuses.request(delay=False)

    def _statuses_changed(self, statuses: dict[int, PredictionStatus]) -> None:
        self.model.set_statuses(statuses)
        self._apply_filter()

    def prediction_statuses(self) -> dict[int, PredictionStatus] | None:
        """The statuses the browser shows (None until computed, or without a run)."""
        return self.statuses.statuses if self.statuses.ready() else None

    def _update_classes(self) -> None:
        project = self.app_state.project
        names = [(c.id, c.name) for c in project.classes()] if project else []
        if names == self._class_names:
            return
        self._class_names = names
        current = self.klass.currentData()
        self.klass.blockSignals(True)
        self.klass.clear()
        self.klass.addItem("Any class", None)
        for cid, name in names:
            self.klass.addItem(name, cid)
        i = self.klass.findData(current)
        self.klass.setCurrentIndex(max(i, 0))
        self.klass.blockSignals(False)
        if i < 0 and current is not None:  # the filtered class was deleted or merged
            self._apply_filter()

    def _update_domains(self) -> None:
        """The domain filter lists the project's domains; it shows only when there are some
        (or while it filters)."""
        project = self.app_state.project
        names = list(project.domains()) if project else []
        current = self.domain.currentData()
        if names != self._domain_names or self.domain.count() == 0:
            self._domain_names = names
            self.domain.blockSignals(True)
            self.domain.clear()
            self.domain.addItem("Any domain", None)
            for name in names:
                self.domain.addItem(name, name)
            self.domain.addItem("No domain", NO_DOMAIN)
            i = self.domain.findData(current)
            self.domain.setCurrentIndex(max(i, 0))
            self.domain.blockSignals(False)
            if i < 0 and current is not None:  # the filtered domain is gone
                self._apply_filter()
        self.domain.setVisible(bool(names) or self.domain.currentIndex() > 0)

    # -- view ----------------------------------------------------------------------------
    def set_grid(self, grid: bool) -> None:
        """Thumbnail grid (wrapping, large icons) or a one-column list (small icons)."""
        v = self.view
        if self.grid_button.isChecked() != grid:
            self.grid_button.setChecked(grid)  # calls back here
            return
        self.model.set_grid(grid)
        v.setViewMode(QListView.ViewMode.ListMode)  # the list engine: no per-item layout
        v.setResizeMode(QListView.ResizeMode.Adjust)
        if grid:
            v.setFlow(QListView.Flow.LeftToRight)
            v.setWrapping(True)
            v.setIconSize(QSize(GRID_ICON, GRID_ICON))
            v.setGridSize(GRID_CELL)
            v.setSpacing(0)
        else:
            v.setFlow(QListView.Flow.TopToBottom)
            v.setWrapping(False)
            v.setIconSize(QSize(LIST_ICON, LIST_ICON))
            v.setGridSize(QSize())
            v.setSpacing(1)
        self._select_image(self.app_state.image_id)

    def visible_rows(self) -> tuple[int, int]:
        """First and last row index painted in the viewport (-1, -1 if none)."""
        vp = self.view.viewport().rect()
        first = self.view.indexAt(vp.topLeft() + QPoint(2, 2)).row()
        last = self.view.indexAt(vp.bottomRight() - QPoint(2, 2)).row()
        n = self.model.rowCount()
        if n == 0:
            return -1, -1
        first = 0 if first < 0 else first
        last = n - 1 if last < 0 else last
        return first, last

    # -- selection and navigation ------------------------------------------------------------
    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        image_id = self.model.id_at(current.row()) if current.isValid() else None
        if image_id is not None:
            self.app_state.set_image(image_id)

    def _select_image(self, image_id: int | None) -> None:
        row = self.model.row_of(image_id)
        if row is None:
            return
        idx = self.model.index(row)
        if self.view.currentIndex() != idx:
            self.view.selectionModel().setCurrentIndex(
                idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
        self.view.scrollTo(idx)

    def go_to_row(self, row: int) -> bool:
        image_id = self.model.id_at(row)
        if image_id is None:
            return False
        self.app_state.set_image(image_id)
        self._select_image(image_id)
        return True

    def step(self, delta: int) -> bool:
        """Select the image ``delta`` rows after the current one (clamped); False at an end."""
        n = self.model.rowCount()
        if n == 0:
            return False
        row = self.model.row_of(self.app_state.image_id)
        if row is None:
            return self.go_to_row(0 if delta > 0 else n - 1)
        target = min(max(row + delta, 0), n - 1)
        return target != row and self.go_to_row(target)

    def next_image(self) -> bool:
        return self.step(1)

    def previous_image(self) -> bool:
        return self.step(-1)

    def next_unlabelled(self) -> bool:
        """The next unlabelled image among those shown (wrapping round); False if none."""
        project = self.app_state.project
        if project is None:
            return False
        flt = replace(self.model.filter, status="unlabelled")
        if flt.uses_predictions:
            image_id = self._next_in_order(filtered_ids(project, flt, self.model.statuses))
        else:
            image_id = next_matching(project, flt, self.app_state.image_id)
        if image_id is None:
            return False
        row = self.model.row_of(image_id)
        if row is None:
            # shown filter excludes it (e.g. "labelled"): it is still selected in the canvas
            self.app_state.set_image(image_id)
            return True
        return self.go_to_row(row)

    def _next_in_order(self, candidates: list[int]) -> int | None:
        """The candidate after the current image in the shown order, wrapping round."""
        if not candidates:
            return None
        current = self.app_state.image_id
        if current in candidates:
            return candidates[(candidates.index(current) + 1) % len(candidates)]
        row = self.model.row_of(current)
        if row is not None:
            for image_id in candidates:
                r = self.model.row_of(image_id)
                if r is not None and r > row:
                    return image_id
        return candidates[0]

    # -- refresh --------------------------------------------------------------------------------
    def _data_changed(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()  # a brush stroke emits many: repaint once
        self.statuses.request()  # labels decide right / wrong

    def _refresh_rows(self) -> None:
        """Refetch the rows on screen (the current one included); others lazily later."""
        if self.app_state.project is None:
            return
        self._update_classes()
        self._update_domains()
        first, last = self.visible_rows()
        current = self.model.row_of(self.app_state.image_id)
        if current is not None:
            first = current if first < 0 else min(first, current)
            last = max(last, current)
        self.model.invalidate(first, last)

    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        ids = [self.model.id_at(r) for r in rows]
        if not ids and self.app_state.image_id is not None:
            ids = [self.app_state.image_id]
        return [i for i in ids if i is not None]

    def set_split(self, split: str | None, ids: list[int] | None = None) -> None:
        """Set the split of ``ids`` (default: the selected images) through the undo stack."""
        self._set_on_images(SetSplits, "split", split, ids)

    def _set_on_images(
        self, command: type[SetSplits] | type[SetDomains], what: str, value: str | None,
        ids: list[int] | None,
    ) -> None:  # fmt: skip
        """Push ``command`` giving ``ids`` (default: the selection) ``value`` as one step."""
        ids = self.selected_ids() if ids is None else ids
        if not ids or self.app_state.project is None:
            return
        n = len(ids)
        text = f"Set {what} of {n} image{'s' if n != 1 else ''} to {value or 'none'}"
        try:
            self.app_state.push(command(dict.fromkeys(ids, value), text=text))
        except TlsError as exc:
            self.message.emit(str(exc))

    def set_domain(self, domain: str | None, ids: list[int] | None = None) -> None:
        """Set the domain of ``ids`` (default: the selected images; None or blank clears
        it) through the undo stack."""
        self._set_on_images(SetDomains, "domain", (domain or "").strip() or None, ids)

    def ask_domain(self) -> None:
        """Ask for the domain of the selected images (a known one or a new name)."""
        ids = self.selected_ids()
        project = self.app_state.project
        if not ids or project is None:
            return
        names = list(project.domains())
        current = project.image(ids[0]).domain
        n = len(ids)
        name, ok = QInputDialog.getItem(
            self, "Set domain",
            f"Domain (site, scanner, batch…) of {n} image{'s' if n != 1 else ''};\n"
            "leave empty for none:",
            names, names.index(current) if current in names else -1, True,
        )  # fmt: skip
        if ok:
            self.set_domain(name, ids)

    def _context_menu(self, pos: QPoint) -> None:
        if self.app_state.project is None:
            return
        menu = QMenu(self)
        menu.setObjectName("browserMenu")
        sub = menu.addMenu("Set split")
        for s in (*SPLITS, None):
            act = sub.addAction(s or "none")
            act.triggered.connect(lambda _=False, s=s: self.set_split(s))
        menu.addAction("Set domain…", self.ask_domain)
        menu.popup(self.view.viewport().mapToGlobal(pos))
