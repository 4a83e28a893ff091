"""Label set: classes and landmark templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ValidationError

MAX_CLASS_NAME = 200
"""Longest class name, in characters: checked when a class is created or renamed, so
every name the project holds can be exported and imported again."""

# Distinct, colour-blind-friendly-ish defaults (Tableau 10 then extras), as #rrggbb.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8",
)  # fmt: skip


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: str  # "#rrggbb"
    position: int


@dataclass(frozen=True)
class LandmarkTemplate:
    """Ordered named points, skeleton edges and left/right pairs (indices into points)."""

    name: str
    points: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    id: int | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValidationError("landmark template needs a name")
        if not self.points:
            raise ValidationError(f"template {self.name!r}: needs at least one point")
        if len(set(self.points)) != len(self.points):
            raise ValidationError(f"template {self.name!r}: point names must be unique")
        n = len(self.points)
        for kind, pairs in (("skeleton edge", self.skeleton), ("left/right pair", self.flip_pairs)):
            for a, b in pairs:
                if not (0 <= a < n and 0 <= b < n) or a == b:
                    raise ValidationError(
                        f"template {self.name!r}: {kind} ({a}, {b}) must join two different "
                        f"points among 0..{n - 1}"
                    )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "points": list(self.points),
            "skeleton": [list(e) for e in self.skeleton],
            "flip_pairs": [list(p) for p in self.flip_pairs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], id: int | None = None) -> LandmarkTemplate:
        try:
            return cls(
                name=str(data["name"]),
                points=tuple(str(p) for p in data["points"]),
                skeleton=tuple((int(a), int(b)) for a, b in data.get("skeleton", [])),
                flip_pairs=tuple((int(a), int(b)) for a, b in data.get("flip_pairs", [])),
                id=id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"landmark template is malformed: {exc!r}") from exc

    def flip_permutation(self) -> list[int]:
        """Index map that swaps left/right points (for horizontal flips)."""
        perm = list(range(len(self.points)))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def builtin_templates() -> list[LandmarkTemplate]:
    """Templates shipped in ``tlstudio/resources/templates`` (COCO body 17, face 5, ...)."""
    folder = resources.files("tlstudio") / "resources" / "templates"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            out.append(LandmarkTemplate.from_json(json.loads(entry.read_text())))
    return out


def load_template_file(path: str | Path) -> LandmarkTemplate:
    """Read a user-defined template from a JSON file ({name, points, skeleton, flip_pairs})."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read template ({exc})") from exc
    try:
        return LandmarkTemplate.from_json(data)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from exc
