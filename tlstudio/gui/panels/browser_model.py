"""The image browser's model and delegate: the images passing a filter, fetched lazily
in pages, with thumbnails, badges and the chosen run's right/wrong marks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from tlstudio.core.prediction_query import PredictionStatus
from tlstudio.core.project import Project
from tlstudio.gui.panels.image_query import BrowserRow, ImageFilter, filtered_ids, rows_for
from tlstudio.gui.workers.thumbnails import ThumbnailLoader, placeholder_icon

PAGE = 200  # rows fetched per query
MAX_PAGES = 100  # pages kept in memory (LRU)
GRID_ICON = 96  # px, longest side of a thumbnail in the grid
LIST_ICON = 32  # px, in list mode
GRID_CELL = QSize(GRID_ICON + 48, GRID_ICON + 58)  # px per thumbnail in the grid
ROW_ROLE = Qt.ItemDataRole.UserRole + 1  # the BrowserRow
ID_ROLE = Qt.ItemDataRole.UserRole  # the image id
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2  # the PredictionStatus, or None


class ImageListModel(QAbstractListModel):
    """Images passing an :class:`ImageFilter`, in id order (or most uncertain first),
    rows fetched lazily. ``statuses``: the chosen run's prediction statuses, or None."""

    def __init__(self, parent: QObject | None = None) -> None:
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
        if self.statuses is None or image_id is None:
            return None
        return self.statuses.get(image_id)

    def ids(self) -> list[int]:
        return list(self._ids)

    def row(self, row: int) -> BrowserRow | None:
        """The fetched row (fetches its page on first use)."""
        if not 0 <= row < len(self._ids) or self.project is None:
            return None
        page_no, offset = divmod(row, PAGE)
        page = self._pages.get(page_no)
        if page is None:
            page = self._fetch(self.project, page_no)
        else:
            self._pages.move_to_end(page_no)
        return page[offset]

    def _fetch(self, project: Project, page_no: int) -> list[BrowserRow | None]:
        start = page_no * PAGE
        ids = self._ids[start : start + PAGE]
        found = rows_for(project, ids)
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
            if self.loader is not None and self.project is not None:  # a row implies a project
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
