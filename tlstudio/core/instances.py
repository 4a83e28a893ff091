"""Objects (instances) and ignore regions of an image, beside its semantic label map.

Three pixel layers per image, all H×W in image pixels:

* the **semantic label map** (:meth:`Project.mask`): pixel = class id, 0 = background.
  Everything that reads masks (training, metrics, the canvas) reads this one;
* the **instance layer** (:meth:`InstanceStore.layer`): an H×W map of object numbers
  (0 = no object) and one :class:`~tlstudio.core.annotations.Instance` per number, with
  its class. A labelled pixel outside every object is "stuff" (or was painted with the
  class brush); objects never overlap;
* the **ignore mask** (:meth:`InstanceStore.ignore`): pixels left out of losses and
  metrics (labelme's ``__ignore__``, VOC's 255 border), whatever their class.

**Consistency.** A pixel belongs to object *k* only while the semantic map holds *k*'s
class there. Every method of :class:`InstanceStore` keeps the two in step (creating an
object paints its class; deleting one clears its pixels to background). Writes of the
semantic map alone (:meth:`Project.set_mask`, the canvas's class brush, a deleted
class) do not touch the stored objects: pixels repainted with another class simply
stop counting as the object's (:meth:`InstanceStore.layer` reports the *effective*
objects), so undoing such a write brings the object's pixels back unchanged. Objects
left with no pixel are dropped at the next instance edit of that image.

**Undo.** :meth:`InstanceStore.state` / :meth:`InstanceStore.restore` snapshot and put
back an image's three layers exactly as stored (encoded bytes and rows: cheap, no
decoding); the commands in :mod:`tlstudio.core.commands` (``CreateInstance``,
``AddToInstance``, ``RemoveFromInstance``, ``DeleteInstance``, ``SetInstanceClass``,
``SetIgnoreRegion``) use them, so each edit is one undo step that restores exactly.

Cost: every edit decodes both maps, paints, counts and re-encodes both PNGs: about three
times a class-brush write of the same image (``tests/bench/bench_instances.py``: 84 ms
at 1000×750, 0.4 s at 2048², 0.9 s at 4000×3000 on a loaded 2-core machine; undo only
writes stored bytes back). On large images run edits off the GUI thread, as the
canvas's MaskWriter does for brush strokes, and give one gesture one command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .annotations import Instance, InstanceLayer, decode_mask, encode_mask
from .errors import ValidationError

if TYPE_CHECKING:
    from .project import ImageRecord, Project

MAX_NUMBER = 65535


@dataclass(frozen=True)
class PixelState:
    """An image's pixel layers exactly as stored (for undo): the semantic map's PNG and
    class list, the instance map's PNG, the instance rows and the ignore mask's PNG."""

    mask: tuple[bytes, list[int]] | None
    instance_map: bytes | None
    rows: tuple[tuple[Any, ...], ...]
    ignore: bytes | None


_ROW_COLS = "id, number, class_id, iscrowd, box_id, outline"


def _row_instance(r: Sequence[Any]) -> Instance:
    return Instance(
        number=int(r[1]), class_id=int(r[2]), iscrowd=bool(r[3]),
        box_id=None if r[4] is None else int(r[4]), outline=Instance.outline_from_json(r[5]),
        id=int(r[0]),
    )  # fmt: skip


def encode_flags(region: np.ndarray) -> bytes:
    """A boolean H×W map as an 8-bit PNG (1 = set)."""
    ok, buf = cv2.imencode(".png", region.astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 fails only on invalid input
        raise ValidationError("region could not be encoded")
    return buf.tobytes()


def decode_flags(png: bytes) -> np.ndarray:
    """Inverse of :func:`encode_flags`."""
    arr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValidationError("stored region is not a valid PNG")
    flags: np.ndarray = arr != 0
    return flags


# -- pure edits: (semantic map, effective layer) in, new ones out (no store access) ---------
#
# Shared by :class:`InstanceStore` and the canvas, which computes an edit on the GUI thread
# and leaves the PNG encoding to a worker. Every function takes writable copies (it writes
# into ``mask`` and ``layer.map``) and returns the layer to store; ``region`` is a boolean
# H×W array of the image's size.


def new_object(mask: np.ndarray, layer: InstanceLayer, class_id: int, region: np.ndarray, *,
               iscrowd: bool = False, box_id: int | None = None, outline: Any = None,
               instance_id: int | None = None, number: int | None = None,
               ) -> tuple[InstanceLayer, Instance]:  # fmt: skip
    """A new object of ``class_id`` over ``region`` (its pixels leave the objects that had
    them and take the class); ``number`` defaults to one above the highest in use. Returns
    (the layer with it, the new object)."""
    used = {o.number for o in layer.objects}
    if number is None:
        number = max(used, default=0) + 1
        if number > MAX_NUMBER:
            number = next((n for n in range(1, MAX_NUMBER + 1) if n not in used), 0)
    if not 1 <= number <= MAX_NUMBER or number in used:
        raise ValidationError(f"cannot number a new object (already {len(used)} objects)")
    inst = Instance(number, class_id, iscrowd, box_id, outline, instance_id)
    layer.map[region] = number
    mask[region] = class_id
    return InstanceLayer(layer.map, (*layer.objects, inst)), inst


def grow_object(mask: np.ndarray, layer: InstanceLayer, number: int,
                region: np.ndarray) -> InstanceLayer:  # fmt: skip
    """Object ``number`` with ``region`` added (taken from other objects, painted its
    class); its outline is dropped (the pixels no longer come from it)."""
    inst = _object(layer, number)
    layer.map[region] = number
    mask[region] = inst.class_id
    return _replace(layer, replace(inst, outline=None))


def shrink_object(mask: np.ndarray, layer: InstanceLayer, number: int,
                  region: np.ndarray) -> InstanceLayer:  # fmt: skip
    """Object ``number`` without ``region``: those of its pixels become background."""
    inst = _object(layer, number)
    pixels = region & (layer.map == number)
    layer.map[pixels] = 0
    mask[pixels] = 0
    return _replace(layer, replace(inst, outline=None))


def drop_object(mask: np.ndarray, layer: InstanceLayer, number: int) -> InstanceLayer:
    """Delete object ``number``; its pixels become background."""
    pixels = layer.map == number
    layer.map[pixels] = 0
    mask[pixels] = 0
    return InstanceLayer(layer.map, tuple(o for o in layer.objects if o.number != number))


def recolour_object(mask: np.ndarray, layer: InstanceLayer, number: int,
                    class_id: int) -> InstanceLayer:  # fmt: skip
    """Object ``number`` with another class (its pixels in the semantic map follow)."""
    inst = _object(layer, number)
    mask[layer.map == number] = class_id
    return _replace(layer, replace(inst, class_id=class_id))


def pruned(layer: InstanceLayer) -> InstanceLayer | None:
    """``layer`` without objects that have no pixel (and with map values of no object set
    to 0, in place); None when no object is left. Counts pixels with ``np.bincount`` (one
    pass, no sort: about 20 ms on 4000×3000)."""
    counts = np.bincount(layer.map.ravel(), minlength=1)
    present = set(np.flatnonzero(counts).tolist()) - {0}
    objects = tuple(o for o in layer.objects if o.number in present)
    stray = present - {o.number for o in objects}
    if stray:  # map values of no object: not part of any object
        layer.map[np.isin(layer.map, list(stray))] = 0
    return InstanceLayer(layer.map, objects) if objects else None


def _object(layer: InstanceLayer, number: int) -> Instance:
    inst = layer.by_number().get(number)
    if inst is None:
        raise ValidationError(f"no object number {number} in this image")
    return inst


def instance_row(o: Instance) -> tuple[Any, ...]:
    """The stored row of an object (as in :attr:`PixelState.rows`)."""
    return (o.id, int(o.number), int(o.class_id), int(bool(o.iscrowd)), o.box_id, o.outline_json())


def row_instance(row: Sequence[Any]) -> Instance:
    """Inverse of :func:`instance_row`."""
    return _row_instance(row)


def state_layers(state: PixelState) -> tuple[InstanceLayer | None, np.ndarray | None]:
    """(the stored instance layer, the ignore mask) of a :class:`PixelState`, decoded; the
    layer is raw (see :func:`effective_layer`)."""
    layer = None
    if state.instance_map is not None:
        layer = InstanceLayer(
            decode_mask(state.instance_map), tuple(_row_instance(r) for r in state.rows)
        )
    ignore = None if state.ignore is None else decode_flags(state.ignore)
    return layer, ignore


class InstanceStore:
    """The objects and ignore regions of a project's images (``project.instances``).

    Regions are boolean H×W arrays in image pixels. Every method that changes data runs
    in one transaction (or joins the caller's). Instance ids are the store's and stay
    the same across undo and redo; numbers are per image (the values in the map)."""

    def __init__(self, project: Project):
        self.project = project

    @property
    def _c(self) -> Any:
        return self.project.store.conn

    # -- reading -------------------------------------------------------------------------
    def layer(self, image_id: int) -> InstanceLayer | None:
        """The image's objects as they are now (pixels whose semantic class is no longer
        the object's are left out, objects with no pixel left are not listed); None when
        it has none."""
        raw = self._raw_layer(image_id)
        if raw is None:
            return None
        mask = self.project.mask(image_id)
        return _effective(raw, mask)

    def of_image(self, image_id: int) -> tuple[Instance, ...]:
        """The image's objects (see :meth:`layer`), in number order."""
        layer = self.layer(image_id)
        return () if layer is None else layer.objects

    def get(self, instance_id: int | None) -> tuple[int, Instance]:
        """(image id, instance) for an instance id, as stored; ValidationError if none."""
        row = self._c.execute(
            f"SELECT image_id, {_ROW_COLS} FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
        if row is None:
            raise ValidationError(f"no object with id {instance_id}")
        return int(row[0]), _row_instance(row[1:])

    def region(self, instance_id: int) -> np.ndarray:
        """Boolean H×W pixels of the object now (empty if it lost them all)."""
        image_id, inst = self.get(instance_id)
        layer = self.layer(image_id)
        if layer is None:
            rec = self.project.image(image_id)
            return np.zeros((rec.height, rec.width), bool)
        return layer.region(inst.number)

    def count(self) -> int:
        """Number of stored objects in the project (objects whose pixels were all
        repainted with another class count until the next edit of their image)."""
        n: int = self._c.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        return n

    def image_ids_with_class(self, class_id: int) -> list[int]:
        return [
            int(r[0])
            for r in self._c.execute(
                "SELECT DISTINCT image_id FROM instances WHERE class_id = ?", (class_id,)
            )
        ]

    # -- editing -------------------------------------------------------------------------
    def add(self, image_id: int, class_id: int, region: np.ndarray, *, iscrowd: bool = False,
            box_id: int | None = None, outline: Any = None, instance_id: int | None = None,
            number: int | None = None) -> Instance:  # fmt: skip
        """A new object of ``class_id`` over ``region`` (its pixels leave the objects that
        had them and take the class). ``outline``: the shapes the region was rasterised
        from (:class:`~tlstudio.core.annotations.OutlinePart` tuple), if any. Returns it
        with its id and number."""
        rec = self.project.image(image_id)
        region = self._check_region(rec, region)
        if not region.any():
            raise ValidationError(f"image {rec.path}: the new object covers no pixel")
        mask, layer = self._current(rec)
        try:
            layer, inst = new_object(mask, layer, class_id, region, iscrowd=iscrowd,
                                     box_id=box_id, outline=outline, instance_id=instance_id,
                                     number=number)  # fmt: skip
        except ValidationError as exc:
            raise ValidationError(f"image {rec.path}: {exc}") from None
        self._write(rec, mask, layer)
        return self._stored(image_id, inst.number)

    def add_region(self, instance_id: int, region: np.ndarray) -> None:
        """Add ``region`` to the object (taken from other objects; painted its class)."""
        rec, mask, layer, inst = self._open(instance_id)
        region = self._check_region(rec, region)
        self._write(rec, mask, grow_object(mask, layer, inst.number, region))

    def remove_region(self, instance_id: int, region: np.ndarray) -> None:
        """Take ``region`` out of the object: those of its pixels become background."""
        rec, mask, layer, inst = self._open(instance_id)
        region = self._check_region(rec, region)
        self._write(rec, mask, shrink_object(mask, layer, inst.number, region))

    def remove(self, instance_id: int) -> None:
        """Delete the object; its pixels become background."""
        rec, mask, layer, inst = self._open(instance_id)
        self._write(rec, mask, drop_object(mask, layer, inst.number))

    def set_class(self, instance_id: int, class_id: int) -> None:
        """Give the object another class (its pixels in the semantic map follow)."""
        rec, mask, layer, inst = self._open(instance_id)
        self._write(rec, mask, recolour_object(mask, layer, inst.number, class_id))

    def set_layer(self, image_id: int, layer: InstanceLayer | None) -> None:
        """Replace the image's objects: the pixels of the objects it had become
        background, then each new object's pixels take its class. Object ids given in
        ``layer`` are kept."""
        rec = self.project.image(image_id)
        mask, old = self._current(rec)
        mask[old.map > 0] = 0
        if layer is None:
            layer = InstanceLayer(np.zeros((rec.height, rec.width), np.uint16))
        self._check_layer(rec, layer)
        labelled = layer.map > 0
        mask[labelled] = layer.semantic()[labelled]
        self._write(rec, mask, InstanceLayer(layer.map.astype(np.uint16, copy=True), layer.objects))

    def write_raw(self, image_id: int, layer: InstanceLayer | None) -> None:
        """Store ``layer`` as it is, without touching the semantic map (for
        :meth:`Project.set_annotations`, whose mask was read together with the layer).
        Pixels whose semantic class differs from their object's do not count as the
        object's (see the module doc)."""
        rec = self.project.image(image_id)
        if layer is not None:
            self._check_layer(rec, layer)
        self._store_layer(image_id, layer)

    # -- ignore regions ------------------------------------------------------------------
    def ignore(self, image_id: int) -> np.ndarray | None:
        """Boolean H×W map of the image's pixels left out of losses and metrics, or None."""
        row = self._c.execute(
            "SELECT png FROM ignore_masks WHERE image_id = ?", (image_id,)
        ).fetchone()
        return None if row is None else decode_flags(row[0])

    def set_ignore(self, image_id: int, region: np.ndarray | None) -> None:
        """Replace the image's ignore region (None or an empty region removes it)."""
        rec = self.project.image(image_id)
        with self.project.transaction():
            if region is None or not np.any(region):
                self._c.execute("DELETE FROM ignore_masks WHERE image_id = ?", (image_id,))
                return
            region = self._check_region(rec, region)
            self._c.execute(
                "INSERT OR REPLACE INTO ignore_masks VALUES (?, ?)",
                (image_id, encode_flags(region)),
            )

    # -- undo support --------------------------------------------------------------------
    def state(self, image_id: int) -> PixelState:
        """The image's semantic map, objects and ignore mask as stored (cheap: no decoding)."""
        row = self._c.execute(
            "SELECT png FROM instance_maps WHERE image_id = ?", (image_id,)
        ).fetchone()
        rows = tuple(
            tuple(r)
            for r in self._c.execute(
                f"SELECT {_ROW_COLS} FROM instances WHERE image_id = ? ORDER BY number",
                (image_id,),
            )
        )
        ign = self._c.execute(
            "SELECT png FROM ignore_masks WHERE image_id = ?", (image_id,)
        ).fetchone()
        return PixelState(
            self.project.encoded_mask(image_id),
            None if row is None else bytes(row[0]),
            rows,
            None if ign is None else bytes(ign[0]),
        )

    def restore(self, image_id: int, state: PixelState) -> None:
        """Put back a :meth:`state` exactly (ids included)."""
        with self.project.transaction():
            if state.mask is None:
                self.project.write_encoded_mask(image_id, None, [])
            else:
                self.project.write_encoded_mask(image_id, *state.mask)
            self._c.execute("DELETE FROM instances WHERE image_id = ?", (image_id,))
            self._c.execute("DELETE FROM instance_maps WHERE image_id = ?", (image_id,))
            if state.instance_map is not None:
                self._c.execute(
                    "INSERT INTO instance_maps VALUES (?, ?)", (image_id, state.instance_map)
                )
            self._c.executemany(
                f"INSERT INTO instances (image_id, {_ROW_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(image_id, *r) for r in state.rows],
            )
            self._c.execute("DELETE FROM ignore_masks WHERE image_id = ?", (image_id,))
            if state.ignore is not None:
                self._c.execute("INSERT INTO ignore_masks VALUES (?, ?)", (image_id, state.ignore))

    def clear(self, image_id: int) -> None:
        """Forget the image's objects and ignore region (the semantic map stays)."""
        with self.project.transaction():
            for table in ("instances", "instance_maps", "ignore_masks"):
                self._c.execute(f"DELETE FROM {table} WHERE image_id = ?", (image_id,))

    # -- internals -----------------------------------------------------------------------
    def _raw_layer(self, image_id: int) -> InstanceLayer | None:
        row = self._c.execute(
            "SELECT png FROM instance_maps WHERE image_id = ?", (image_id,)
        ).fetchone()
        if row is None:
            return None
        rows = self._c.execute(
            f"SELECT {_ROW_COLS} FROM instances WHERE image_id = ? ORDER BY number", (image_id,)
        )
        return InstanceLayer(decode_mask(row[0]), tuple(_row_instance(r) for r in rows))

    def _current(self, rec: ImageRecord) -> tuple[np.ndarray, InstanceLayer]:
        """(semantic map, effective layer) to edit: writable copies, zeros if absent."""
        mask = self.project.mask(rec.id)
        mask = np.zeros((rec.height, rec.width), np.uint16) if mask is None else mask.copy()
        raw = self._raw_layer(rec.id)
        layer = None if raw is None else _effective(raw, mask)
        if layer is None:
            layer = InstanceLayer(np.zeros((rec.height, rec.width), np.uint16))
        return mask, layer

    def _open(self, instance_id: int) -> tuple[ImageRecord, np.ndarray, InstanceLayer, Instance]:
        image_id, stored = self.get(instance_id)
        rec = self.project.image(image_id)
        mask, layer = self._current(rec)
        inst = layer.by_number().get(stored.number)
        if inst is None:  # every pixel was repainted with another class: still editable
            inst = stored
            layer = InstanceLayer(layer.map, (*layer.objects, stored))
        return rec, mask, layer, inst

    def _stored(self, image_id: int, number: int) -> Instance:
        row = self._c.execute(
            f"SELECT {_ROW_COLS} FROM instances WHERE image_id = ? AND number = ?",
            (image_id, number),
        ).fetchone()
        if row is None:  # pragma: no cover - written just before
            raise ValidationError(f"object {number} of image {image_id} was not stored")
        return _row_instance(row)

    def _check_region(self, rec: ImageRecord, region: np.ndarray) -> np.ndarray:
        region = np.asarray(region)
        if region.shape != (rec.height, rec.width):
            raise ValidationError(
                f"image {rec.path}: region is {region.shape[1] if region.ndim > 1 else '?'}×"
                f"{region.shape[0]} px, image is {rec.width}×{rec.height} px"
            )
        flags: np.ndarray = region.astype(bool, copy=False)
        return flags

    def _check_layer(self, rec: ImageRecord, layer: InstanceLayer) -> None:
        if layer.map.shape != (rec.height, rec.width):
            raise ValidationError(
                f"image {rec.path}: object map is {layer.map.shape[1]}×{layer.map.shape[0]} px,"
                f" image is {rec.width}×{rec.height} px"
            )
        numbers = [o.number for o in layer.objects]
        if len(set(numbers)) != len(numbers):
            raise ValidationError(f"image {rec.path}: two objects share a number")
        if any(not 1 <= n <= MAX_NUMBER for n in numbers):
            raise ValidationError(f"image {rec.path}: object numbers must be in 1..{MAX_NUMBER}")
        if layer.map.size and (int(layer.map.min()) < 0 or int(layer.map.max()) > MAX_NUMBER):
            raise ValidationError(f"image {rec.path}: object map values must be in 0..{MAX_NUMBER}")
        known = {c.id for c in self.project.classes()}
        for o in layer.objects:
            if o.class_id not in known:
                raise ValidationError(
                    f"image {rec.path}: object uses unknown class id {o.class_id}"
                )
            if o.box_id is not None:
                row = self._c.execute(
                    "SELECT image_id FROM boxes WHERE id = ?", (o.box_id,)
                ).fetchone()
                if row is None or row[0] != rec.id:
                    raise ValidationError(
                        f"image {rec.path}: object {o.number} names box {o.box_id}, "
                        "which is not a box of this image"
                    )

    def _write(self, rec: ImageRecord, mask: np.ndarray, layer: InstanceLayer) -> None:
        """Store a consistent (semantic map, layer); objects without pixels are dropped."""
        self._check_layer(rec, layer)
        with self.project.transaction():
            self.project.set_mask(rec.id, mask)
            self._store_layer(rec.id, pruned(layer))

    def _store_layer(self, image_id: int, layer: InstanceLayer | None) -> None:
        with self.project.transaction():
            self._c.execute("DELETE FROM instances WHERE image_id = ?", (image_id,))
            if layer is None or not layer.objects:
                self._c.execute("DELETE FROM instance_maps WHERE image_id = ?", (image_id,))
                return
            png, _ = encode_mask(layer.map)
            self._c.execute("INSERT OR REPLACE INTO instance_maps VALUES (?, ?)", (image_id, png))
            self._c.executemany(
                f"INSERT INTO instances (image_id, {_ROW_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(image_id, *instance_row(o)) for o in layer.objects],
            )


def _replace(layer: InstanceLayer, inst: Instance) -> InstanceLayer:
    objects = tuple(inst if o.number == inst.number else o for o in layer.objects)
    return InstanceLayer(layer.map, objects)


def effective_layer(raw: InstanceLayer | None, mask: np.ndarray | None) -> InstanceLayer | None:
    """The objects of ``raw`` where the semantic map ``mask`` still holds their class
    (None when none is left): what :meth:`InstanceStore.layer` reports."""
    return None if raw is None else _effective(raw, mask)


def _effective(raw: InstanceLayer, mask: np.ndarray | None) -> InstanceLayer | None:
    """The objects of ``raw`` where the semantic map ``mask`` still holds their class."""
    if mask is None or not raw.objects:
        return None
    lut_size = max(int(raw.map.max()) if raw.map.size else 0, max(o.number for o in raw.objects))
    lut = np.full(lut_size + 1, -1, np.int32)  # numbers without an object match no class
    for o in raw.objects:
        lut[o.number] = o.class_id
    eff = raw.map.astype(np.uint16, copy=True)
    eff[lut[raw.map] != mask] = 0
    present = set(np.flatnonzero(np.bincount(eff.ravel(), minlength=1)).tolist()) - {0}
    objects = tuple(o for o in raw.objects if o.number in present)
    if not objects:
        return None
    return InstanceLayer(eff, objects)


def outline_json_text(outline: Any) -> str:
    """JSON text of an outline (for messages and tests)."""
    return json.dumps([p.to_json() for p in outline])
