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
most uncertain first) and marks rows ✓ / ✗ with the uncertainty. The statuses
come from :func:`~tlstudio.core.prediction_query.prediction_status`, computed off
the GUI thread (about 50 ms for 5,000 classified images; masks take longer) and
again after predictions or labels change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.commands import SetSplits
from tlstudio.core.errors import TlsError
from tlstudio.core.prediction_query import UNCERTAIN, PredictionStatus, prediction_status
from tlstudio.core.project import SPLITS, Project
from tlstudio.gui.panels.image_query import (
    ANY,
    NO_SPLIT,
    ORDER_NAMES,
    ORDERS,
    PREDICTION_NAMES,
    PREDICTIONS,
    STATUS_NAMES,
    STATUSES,
    BrowserRow,
    ImageFilter,
    filtered_ids,
    next_matching,
    rows_for,
)
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.tasks import run_in_background
from tlstudio.gui.workers.thumbnails import ThumbnailLoader, placeholder_icon

PAGE = 200  # rows fetched per query
MAX_PAGES = 100  # pages kept in memory (LRU)
GRID_ICON = 96  # px, longest side of a thumbnail in the grid
LIST_ICON = 32  # px, in list mode
GRID_CELL = QSize(GRID_ICON + 48, GRID_ICON + 58)  # px per thumbnail in the grid
ROW_ROLE = Qt.ItemDataRole.UserRole + 1  # the BrowserRow
ID_ROLE = Qt.ItemDataRole.UserRole  # the image id
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2  # the PredictionStatus, or None
STATUS_DELAY_MS = 300  # labels changed: recompute prediction statuses once the edits pause
NO_RUN_TIP = (
    "Choose a run in Inspect mode (the Run: picker) to filter and sort images by its predictions"
)

# Keys the browser handles itself (the window's actions add next/previous/unlabelled).
BROWSER_KEYS = [
    ("Up / Down / Left / Right", "Move to the neighbouring image (browser focused)"),
    ("Home / End", "First / last image in the browser (browser focused)"),
    ("Shift+click, Ctrl+click", "Select several images (for Set split)"),
    ("Menu key / right-click", "Set the split of the selected images"),
]


class ImageListModel(QAbstractListModel):
    """Images passing an :class:`ImageFilter`, in id order (or most uncertain first),
    rows fetched lazily. ``statuses``: the chosen run's prediction statuses, or None."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Project | None = None
        self.loader: ThumbnailLoader | None = None
        self.filter = ImageFilter()
        self.grid = True  # two-line text under a large icon, else one line
        self.statuses: Mapping[int, PredictionStatus] | None = None
        self._ids: list[int] = []
        self._row_index: dict[int, int] = {}
        self._pages: OrderedDict[int, list[BrowserRow | None]] = OrderedDict()
        self._rows_by_key: dict[str, set[int]] = {}
        self._placeholder = placeholder_icon(GRID_ICON)
        self._grey = QBrush(QColor("#7a8290"))
        self._red = QBrush(QColor("#c0392b"))  # rows the chosen run got wrong
        self._italic = QFont()
        self._italic.setItalic(True)

    # -- content -------------------------------------------------------------------
    def set_project(self, project: Project | None, loader: ThumbnailLoader | None) -> None:
        if self.loader is not None:
            self.loader.thumbnail_ready.disconnect(self._on_thumbnail)
        self.project, self.loader = project, loader
        if loader is not None:
            loader.thumbnail_ready.connect(self._on_thumbnail)
        self.filter = ImageFilter()
        self.statuses = None
        self.reload()

    def set_filter(self, flt: ImageFilter) -> None:
        if flt != self.filter:
            self.filter = flt
            self.reload()

    def set_statuses(self, statuses: Mapping[int, PredictionStatus] | None) -> None:
        """New prediction statuses: refilter if the filter uses them, repaint the marks."""
        self.statuses = statuses
        if self.filter.uses_predictions:
            ids = filtered_ids(self.project, self.filter, statuses) if self.project else []
            if ids != self._ids:
                self.reload(ids)
                return
        self.invalidate()

    def reload(self, ids: list[int] | None = None) -> None:
        """Query the ids again (after imports or a filter change)."""
        if ids is None:
            ids = filtered_ids(self.project, self.filter, self.statuses) if self.project else []
        self.beginResetModel()
        self._ids = ids
        self._row_index = {image_id: row for row, image_id in enumerate(ids)}
        self._drop_cache()
        self.endResetModel()

    def invalidate(self, first: int = 0, last: int | None = None) -> None:
        """Forget fetched rows (annotations changed) and repaint rows first..last."""
        self._drop_cache()
        if self._ids:
            last = len(self._ids) - 1 if last is None else min(last, len(self._ids) - 1)
            if 0 <= first <= last:
                self.dataChanged.emit(self.index(first), self.index(last))

    def _drop_cache(self) -> None:
        self._pages.clear()
        self._rows_by_key.clear()

    def set_grid(self, grid: bool) -> None:
        self.grid = grid
        self.invalidate()

    # -- lookups -------------------------------------------------------------------
    def id_at(self, row: int) -> int | None:
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def row_of(self, image_id: int | None) -> int | None:
        return None if image_id is None else self._row_index.get(image_id)

    def status_of(self, image_id: int | None) -> PredictionStatus | None:
        """The chosen run's verdict on the image (None: no run or not predicted)."""
        return None if self.statuses is None else self.statuses.get(image_id)

    def ids(self) -> list[int]:
        return list(self._ids)

    def row(self, row: int) -> BrowserRow | None:
        """The fetched row (fetches its page on first use)."""
        if not 0 <= row < len(self._ids) or self.project is None:
            return None
        page_no, offset = divmod(row, PAGE)
        page = self._pages.get(page_no)
        if page is None:
            page = self._fetch(page_no)
        else:
            self._pages.move_to_end(page_no)
        return page[offset]

    def _fetch(self, page_no: int) -> list[BrowserRow | None]:
        start = page_no * PAGE
        ids = self._ids[start : start + PAGE]
        found = rows_for(self.project, ids)
        page = [found.get(i) for i in ids]
        for offset, r in enumerate(page):
            if r is not None:
                self._rows_by_key.setdefault(r.sha256, set()).add(start + offset)
        self._pages[page_no] = page
        while len(self._pages) > MAX_PAGES:
            old_no, old = self._pages.popitem(last=False)
            for offset, r in enumerate(old):
                if r is not None:
                    self._rows_by_key.get(r.sha256, set()).discard(old_no * PAGE + offset)
        return page

    def _on_thumbnail(self, key: str) -> None:
        for row in self._rows_by_key.get(key, ()):
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    # -- Qt model ---------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0):
        if not index.isValid():
            return None
        if role == ID_ROLE:
            return self.id_at(index.row())
        if role == STATUS_ROLE:
            return self.status_of(self.id_at(index.row()))
        r = self.row(index.row())
        if r is None:
            return "(removed)" if role == Qt.ItemDataRole.DisplayRole else None
        if role == Qt.ItemDataRole.DisplayRole:
            split = r.split or "no split"
            mark = self._mark(r.id)
            if self.grid:  # three short lines fit under a thumbnail
                kinds = r.kind_badges() if r.is_labelled else "unlabelled"
                third = " · ".join(p for p in (mark, kinds) if p)
                if not r.is_labelled:
                    return f"{r.name}\n{split}\n{third}"
                tags = ", ".join(r.tag_names)
                return f"{r.name}\n{split}{' · ' + tags if tags else ''}\n{third}"
            mark = self._mark(r.id, long=True)
            return f"{r.name}   —   {split} · {r.badges()}{'   ' + mark if mark else ''}"
        if role == Qt.ItemDataRole.DecorationRole:
            icon = None
            if self.loader is not None:
                icon = self.loader.icon(r.sha256, r.absolute_path(self.project.root))
            return icon if icon is not None else self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            err = self.loader.error(r.sha256) if self.loader else None
            return r.description() + self._status_tip(r.id) + (f"\nthumbnail: {err}" if err else "")
        if role == Qt.ItemDataRole.ForegroundRole:
            if not r.is_labelled:
                return self._grey
            st = self.status_of(r.id)
            return self._red if st is not None and st.correct is False else None
        if role == Qt.ItemDataRole.FontRole and not r.is_labelled:
            return self._italic
        if role == ROW_ROLE:
            return r
        return None

    def _mark(self, image_id: int, long: bool = False) -> str:
        """'✗ 0.62' (right/wrong and uncertainty; ``long``: '✗ wrong, uncertainty 0.62'),
        'not predicted', or '' without a run."""
        if self.statuses is None:
            return ""
        st = self.statuses.get(image_id)
        if st is None:
            return "not predicted"
        if not long:
            return st.mark if st.uncertainty is None else f"{st.mark} {st.uncertainty:.2f}"
        verdict = {True: "right", False: "wrong", None: "no label to compare"}[st.correct]
        doubt = "" if st.uncertainty is None else f", uncertainty {st.uncertainty:.2f}"
        return f"{st.mark} {verdict}{doubt}"

    def _status_tip(self, image_id: int) -> str:
        if self.statuses is None:
            return ""
        st = self.statuses.get(image_id)
        if st is None:
            return "\nprediction: none by this run"
        verdict = {True: "right", False: "wrong", None: "nothing to compare"}[st.correct]
        doubt = "unknown" if st.uncertainty is None else f"{st.uncertainty:.2f}"
        return f"\nprediction: {verdict} ({st.reason})\nuncertainty: {doubt} (0 sure … 1 unsure)"


class GridDelegate(QStyledItemDelegate):
    """Icon above two centred lines of text in grid mode (the list engine would put
    the icon left of the text; IconMode's engine lays out every item up front)."""

    def __init__(self, model: ImageListModel, parent=None):
        super().__init__(parent)
        self.model = model

    def initStyleOption(self, option: QStyleOptionViewItem, index) -> None:
        super().initStyleOption(option, index)
        if self.model.grid:
            option.decorationPosition = QStyleOptionViewItem.Position.Top
            option.decorationAlignment = Qt.AlignmentFlag.AlignHCenter
            option.displayAlignment = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
            option.textElideMode = Qt.TextElideMode.ElideRight
            option.features &= ~QStyleOptionViewItem.ViewItemFeature.WrapText

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:
        if self.model.grid:  # exactly one grid cell, so long text is elided, not overlapping
            return GRID_CELL - QSize(6, 6)
        return super().sizeHint(option, index)


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
        # prediction statuses of app_state.run_id: (project root, run id) they belong to,
        # the result, whether a computation is running and whether it is already stale
        self._statuses_for: tuple[Path, int] | None = None
        self._statuses: dict[int, PredictionStatus] | None = None
        self._status_busy = False
        self._status_running: tuple[Path, int] | None = None
        self._status_stale = False
        self._status_timer = QTimer(self, singleShot=True, interval=STATUS_DELAY_MS)
        self._status_timer.timeout.connect(self._compute_statuses)

        top = QHBoxLayout()
        top.addWidget(self.status)
        top.addWidget(self.split)
        top.addWidget(self.klass)
        middle = QHBoxLayout()
        middle.addWidget(self.prediction)
        middle.addWidget(self.order, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.search, 1)
        bottom.addWidget(self.grid_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addLayout(middle)
        lay.addLayout(bottom)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.count_label)
        for combo in (self.status, self.split, self.klass, self.prediction, self.order):
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
        self._forget_statuses()
        self.model.set_project(project, loader)
        self._enable_prediction_filters()
        self._ensure_statuses()
        self._update_count()
        if self.model.rowCount() and self.app_state.image_id is None:
            self.app_state.set_image(self.model.id_at(0))
        else:
            self._select_image(self.app_state.image_id)

    def _project_closed(self) -> None:
        self._forget_statuses()
        self.model.set_project(None, None)
        self._enable_prediction_filters()
        self._close_loader()
        self._update_classes()
        self._update_count()

    def _close_loader(self) -> None:
        loader = self.model.loader
        if loader is not None:
            loader.shutdown()
            loader.deleteLater()

    def shutdown(self) -> None:
        """Stop thumbnail and prediction-status work (window closing)."""
        self._status_timer.stop()
        self._forget_statuses()
        self._close_loader()
        self.model.loader = None

    def reload(self) -> None:
        """Query rows again (after an import), keeping the current image."""
        self._update_classes()
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
        for combo in (self.status, self.split, self.klass, self.prediction, self.order):
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
        if flt.uses_predictions and not self._statuses_ready():
            # shown once the statuses arrive (_statuses_computed applies the filter)
            self._ensure_statuses()
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
            if not self._statuses_ready():
                text = f"Checking the predictions of run {self.app_state.run_id}…"
            elif self._statuses_for is not None:
                text += f" (predictions of run {self._statuses_for[1]})"
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
        self._forget_statuses()
        if run_id is None:
            self.model.set_statuses(None)
        # else the old run's marks stay until the new statuses replace them (~0.1 s)
        self._enable_prediction_filters()
        self._apply_filter()
        self._ensure_statuses()

    def _predictions_changed(self) -> None:
        self._request_statuses(delay=False)

    def _forget_statuses(self) -> None:
        self._statuses_for = None
        self._statuses = None
        self._status_timer.stop()

    def _wanted_statuses(self) -> tuple[Path, int] | None:
        project, run_id = self.app_state.project, self.app_state.run_id
        return None if project is None or run_id is None else (project.root, run_id)

    def _statuses_ready(self) -> bool:
        wanted = self._wanted_statuses()
        return wanted is not None and self._statuses_for == wanted

    def _ensure_statuses(self) -> None:
        """Compute the chosen run's statuses unless known or on their way."""
        wanted = self._wanted_statuses()
        if wanted is None or self._statuses_ready():
            return
        if not (self._status_busy and self._status_running == wanted):
            self._compute_statuses()

    def _request_statuses(self, delay: bool = True) -> None:
        """Recompute the chosen run's statuses (labels or predictions changed) in the
        background, after ``STATUS_DELAY_MS`` (edits come in bursts) or now."""
        if self._wanted_statuses() is None:
            return
        if delay:
            self._status_timer.start()
        else:
            self._status_timer.stop()
            self._compute_statuses()

    def _compute_statuses(self) -> None:
        wanted = self._wanted_statuses()
        if wanted is None:
            return
        if self._status_busy:  # one at a time; the running one is already out of date
            self._status_stale = True
            return
        self._status_busy, self._status_stale, self._status_running = True, False, wanted
        root, run_id = wanted

        def work() -> dict[int, PredictionStatus]:
            project = Project.open(root)  # SQLite connections belong to one thread
            try:
                return prediction_status(project, run_id)
            finally:
                project.close()

        run_in_background(
            work,
            lambda result: self._statuses_computed(wanted, result),
            lambda message: self._statuses_failed(wanted, message),
            context=self,
        )

    def _statuses_computed(self, key: tuple[Path, int], statuses: dict) -> None:
        self._status_busy = False
        if self._status_stale or key != self._wanted_statuses():
            self._compute_statuses()  # labels, predictions or the run changed meanwhile
            if key != self._wanted_statuses():
                return
        if key == self._statuses_for and statuses == self._statuses:
            return  # the edit changed no verdict: no refilter, no repaint
        self._statuses_for, self._statuses = key, statuses
        self.model.set_statuses(statuses)
        self._apply_filter()

    def _statuses_failed(self, key: tuple[Path, int], message: str) -> None:
        self._status_busy = False
        if key == self._wanted_statuses():
            self.message.emit(f"Cannot check the predictions of run {key[1]}: {message}")
            self._statuses_for, self._statuses = key, {}
            self.model.set_statuses(self._statuses)
            self._apply_filter()
        elif self._wanted_statuses() is not None:
            self._compute_statuses()

    def prediction_statuses(self) -> dict[int, PredictionStatus] | None:
        """The statuses the browser shows (None until computed, or without a run)."""
        return self._statuses if self._statuses_ready() else None

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
        if self.model.row_of(image_id) is None:
            # shown filter excludes it (e.g. "labelled"): it is still selected in the canvas
            self.app_state.set_image(image_id)
            return True
        return self.go_to_row(self.model.row_of(image_id))

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
        self._request_statuses()  # labels decide right / wrong

    def _refresh_rows(self) -> None:
        """Refetch the rows on screen (the current one included); others lazily later."""
        if self.app_state.project is None:
            return
        self._update_classes()
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
        ids = self.selected_ids() if ids is None else ids
        if not ids or self.app_state.project is None:
            return
        n = len(ids)
        text = f"Set split of {n} image{'s' if n != 1 else ''} to {split or 'none'}"
        try:
            self.app_state.push(SetSplits(dict.fromkeys(ids, split), text=text))
        except TlsError as exc:
            self.message.emit(str(exc))

    def _context_menu(self, pos: QPoint) -> None:
        if self.app_state.project is None:
            return
        menu = QMenu(self)
        sub = menu.addMenu("Set split")
        for s in (*SPLITS, None):
            act = sub.addAction(s or "none")
            act.triggered.connect(lambda _=False, s=s: self.set_split(s))
        menu.popup(self.view.viewport().mapToGlobal(pos))
