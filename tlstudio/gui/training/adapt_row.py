"""The Train panel's "Adapt to domain" row: a method and the domain whose images the run
adapts to (their labels are never used; see :mod:`tlstudio.ml.adapt`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from tlstudio.ml.adapt_config import ADAPT_METHODS, METHOD_NAMES

if TYPE_CHECKING:
    from tlstudio.ml.adapt_config import AdaptConfig

METHOD_TIP = (
    "Train so the model also works on another domain's images (another site, scanner, "
    "batch): those images are used without their labels.\nCORAL, MMD and DANN align the "
    "backbone's features while it trains (a freeze depth below all); per-domain "
    "standardisation and CORAL also work on cached features of a frozen backbone."
)
NO_DOMAINS_TIP = (
    "No image has a domain yet: select images in the browser and right-click → Set domain… "
    "(or import them with a domain)"
)


class AdaptRow(QWidget):
    """``[method ▾] to [domain ▾]``; "No adaptation" is the first method."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("adaptMethodCombo")
        self.method_combo.addItem("No adaptation", None)
        for m in ADAPT_METHODS:
            self.method_combo.addItem(METHOD_NAMES[m], m)
        self.domain_combo = QComboBox()
        self.domain_combo.setObjectName("adaptDomainCombo")
        self.domain_combo.setToolTip("The domain to adapt to (its images leave training)")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.method_combo, 1)
        lay.addWidget(QLabel("to"))
        lay.addWidget(self.domain_combo, 1)
        self.method_combo.currentIndexChanged.connect(lambda _i: self._method_changed())
        self.domain_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.set_domains(())

    def set_domains(self, names: Sequence[str]) -> None:
        """The domains to offer (the project's); the chosen one stays if it is still there."""
        current = self.domain_combo.currentData()
        self.domain_combo.blockSignals(True)
        self.domain_combo.clear()
        for name in names:
            self.domain_combo.addItem(name, name)
        self.domain_combo.setCurrentIndex(max(self.domain_combo.findData(current), 0))
        self.domain_combo.blockSignals(False)
        self.method_combo.setEnabled(bool(names))
        self.method_combo.setToolTip(METHOD_TIP if names else NO_DOMAINS_TIP)
        if not names and self.method_combo.currentIndex() != 0:
            self.method_combo.setCurrentIndex(0)
        self._method_changed()

    def config(self) -> AdaptConfig | None:
        """The adaptation the row describes (None: none)."""
        from tlstudio.ml.adapt_config import AdaptConfig

        method, domain = self.method_combo.currentData(), self.domain_combo.currentData()
        if method is None or not domain:
            return None
        return AdaptConfig(str(method), str(domain))

    def problem(self, task: str, cached: bool, frozen: bool) -> str | None:
        """Why the chosen adaptation cannot run with these settings (None: it can, or
        there is none); ``cached``/``frozen`` as for ``check_adaptation``."""
        from tlstudio.ml.adapt_config import AdaptError, check_adaptation

        config = self.config()
        if config is None:
            return None
        try:
            check_adaptation(config, task, cached, frozen)
        except AdaptError as exc:
            return str(exc)
        return None

    def set_config(self, config: AdaptConfig | None) -> None:
        """Show ``config`` (a domain no longer in the project is offered all the same)."""
        if config is not None and self.domain_combo.findData(config.target_domain) < 0:
            self.domain_combo.addItem(config.target_domain, config.target_domain)
        if config is not None:
            self.domain_combo.setCurrentIndex(self.domain_combo.findData(config.target_domain))
        method = None if config is None else config.method
        self.method_combo.setCurrentIndex(max(self.method_combo.findData(method), 0))

    def _method_changed(self) -> None:
        self.domain_combo.setEnabled(
            self.method_combo.isEnabled() and self.method_combo.currentIndex() > 0
        )
        self.changed.emit()
