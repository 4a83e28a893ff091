"""Field metadata for settings dataclasses (:class:`~tlstudio.ml.trainer.TrainConfig`,
:class:`~tlstudio.ml.transforms.AugmentConfig`): the label and help text people see and
the range an editor offers. The Train panel builds its editors from it, so a field
gains a widget by gaining a label here. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_KEY = "tlstudio_setting"


@dataclass(frozen=True)
class SettingInfo:
    """How to show a field. ``range``: (min, max) an editor allows; ``step``: arrow-key
    step; ``decimals``: shown decimals (floats); ``log``: the value spans decades (shown
    as ``3e-04``); ``choices``: (value, label) pairs; ``suffix``: unit after the number;
    ``off``: text shown at the minimum, which means "off" (for an optional field: None);
    ``tasks``: the tasks the field applies to (empty: all); ``needs``: a bool field of
    the same dataclass that must be on for this one to matter."""

    label: str
    help: str
    range: tuple[float, float] | None = None
    step: float = 1.0
    decimals: int = 2
    log: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    suffix: str = ""
    off: str = ""
    tasks: tuple[str, ...] = ()
    needs: str = ""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    **info: Any,
) -> Any:
    """A dataclass field carrying a :class:`SettingInfo` (``info`` are its fields)."""
    meta = {_KEY: SettingInfo(**info)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def setting_info(f: dataclasses.Field[Any]) -> SettingInfo | None:
    """The :class:`SettingInfo` of a dataclass field, or None when it has none."""
    info = f.metadata.get(_KEY)
    return info if isinstance(info, SettingInfo) else None


def settings_of(cls: type) -> list[tuple[dataclasses.Field[Any], SettingInfo]]:
    """The fields of dataclass ``cls`` that carry a :class:`SettingInfo`, in field order."""
    out = []
    for f in dataclasses.fields(cls):
        info = setting_info(f)
        if info is not None:
            out.append((f, info))
    return out
