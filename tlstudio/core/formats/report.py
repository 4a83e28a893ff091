"""What a label import reports back (kept apart so the registry stays light to import)."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("tags", "boxes", "landmarks", "masks", "objects", "ignore")


@dataclass
class LabelImportReport:
    """Outcome of a label import.

    ``annotations`` counts what was added per kind: ``tags``, ``boxes``,
    ``landmarks`` (landmark sets), ``masks`` (images whose label map received
    pixels), ``objects`` (instances) and ``ignore`` (ignore regions)."""

    images_added: int = 0
    images_matched: int = 0
    annotations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    warnings: list[str] = field(default_factory=list)
