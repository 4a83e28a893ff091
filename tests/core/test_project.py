"""The project: importing images, missing files, classes, validation, queries, masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tlstudio.core.annotations import (
    OCCLUDED,
    SKIPPED,
    Box,
    ImageAnnotations,
    LandmarkSet,
    Point,
    decode_mask,
    encode_mask,
)
from tlstudio.core.errors import ValidationError
from tlstudio.core.labelset import LandmarkTemplate, builtin_templates
from tlstudio.core.project import Project

W, H = 32, 24  # size of the fixture's images


def _face(project: Project) -> LandmarkTemplate:
    t = project.template_by_name("Face 5")
    assert t is not None
    return t


def _face_points(dx: float = 0.0) -> tuple[Point, ...]:
    return (
        Point(10 + dx, 8),
        Point(20 + dx, 8),
        Point(15 + dx, 12, OCCLUDED),
        Point(11 + dx, 18),
        Point(0, 0, SKIPPED),
    )


def _ids(project: Project) -> dict[str, int]:
    return {c.name: c.id for c in project.classes()}


# -- importing -------------------------------------------------------------------


def test_add_files_and_folders_recursively(tmp_path: Path, make_images) -> None:
    src = tmp_path / "src"
    top = make_images(src, 2)
    nested = make_images(src / "a" / "b", 3, start=10)
    single = make_images(tmp_path / "loose", 1, start=20)
    (src / "a" / "notes.txt").write_text("not an image")  # not picked up by suffix
    with Project.create(tmp_path / "proj") as proj:
        report = proj.add_images([src, single[0]])
        assert len(report.added) == 6
        assert report.failed == [] and report.duplicates == []
        stored = sorted(r.path for r in proj.images())
        expected = sorted(
            Path("..", p.relative_to(tmp_path)).as_posix() for p in top + nested + single
        )
        assert stored == expected
        for rec in proj.images():
            assert not Path(rec.path).is_absolute()
            assert proj.image_path(rec).resolve().is_file()
            assert proj.image_by_path(proj.image_path(rec)) == rec

        # not recursive: only the top level of the folder
        with Project.create(tmp_path / "proj2") as flat:
            assert len(flat.add_images([src], recursive=False).added) == 2


def test_import_from_a_folder_called_cache(tmp_path: Path, make_images) -> None:
    """Only the project's own cache folder is skipped, not any folder named 'cache'."""
    files = make_images(tmp_path / "cache" / "scans", 2)
    with Project.create(tmp_path / "proj") as proj:
        report = proj.add_images([tmp_path / "cache"])
        assert len(report.added) == 2, report
        # the project's own cache folder is never imported
        make_images(proj.cache_dir / "thumbs", 1, start=50)
        report = proj.add_images([proj.root])
        assert report.added == []
        assert {proj.image_path(r).resolve() for r in proj.images()} == {f.resolve() for f in files}


def test_paths_are_relative_to_project_folder(tmp_path: Path, make_images) -> None:
    root = tmp_path / "proj"
    inside = make_images(root / "data", 2)
    with Project.create(root) as proj:
        proj.add_images([root / "data"])
        assert sorted(r.path for r in proj.images()) == ["data/img000.png", "data/img001.png"]
    # moving the whole project folder keeps every image reachable
    moved = tmp_path / "elsewhere" / "proj"
    shutil.move(root, moved)
    with Project.open(moved) as proj:
        assert proj.missing_images() == []
        assert len(inside) == proj.image_count()


def test_copy_into_project(tmp_path: Path, make_images, write_image) -> None:
    files = make_images(tmp_path / "src", 2)
    clash = write_image(tmp_path / "other" / "img000.png", np.full((H, W, 3), 9, np.uint8))
    sources = [*files, clash]  # two files called img000.png, different content
    with Project.create(tmp_path / "proj") as proj:
        report = proj.add_images(sources, copy=True)
        assert len(report.added) == 3
        paths = [r.path for r in proj.images()]
        assert all(p.startswith("images/") for p in paths), paths
        assert len(set(paths)) == 3
        for rec, src in zip(proj.images(), sources, strict=True):
            dest = proj.image_path(rec)
            assert dest.parent == proj.root / "images"
            assert dest.read_bytes() == src.read_bytes()
        # the originals may now go away
        shutil.rmtree(tmp_path / "src")
        shutil.rmtree(tmp_path / "other")
        assert proj.missing_images() == []


def test_duplicates_skipped_and_reported(tmp_path: Path, make_images) -> None:
    files = make_images(tmp_path / "src", 3)
    dup = tmp_path / "src" / "copy_of_first.png"
    shutil.copy(files[0], dup)
    with Project.create(tmp_path / "proj") as proj:
        report = proj.add_images([tmp_path / "src"])
        assert len(report.added) == 3
        assert report.duplicates == [dup.resolve()] or report.duplicates == [files[0].resolve()]
        # importing again: everything is a duplicate, nothing is added
        again = proj.add_images([tmp_path / "src"])
        assert again.added == []
        assert sorted(again.duplicates) == sorted(p.resolve() for p in [*files, dup])
        assert proj.image_count() == 3


def test_reimport_after_file_changed_in_place(tmp_path: Path, make_images, write_image) -> None:
    """Same path, new content: reported, not a crash of the whole import."""
    files = make_images(tmp_path / "src", 2)
    with Project.create(tmp_path / "proj") as proj:
        proj.add_images(files)
        write_image(files[0], np.zeros((H, W, 3), np.uint8))  # edited in another program
        (extra,) = make_images(tmp_path / "src", 1, start=7)
        report = proj.add_images([tmp_path / "src"])
        assert [proj.image_path(i).resolve() for i in report.added] == [extra.resolve()]
        assert [p for p, _ in report.failed] == [files[0].resolve()]
        assert "already in the project with different content" in report.failed[0][1]
        assert report.duplicates == [files[1].resolve()]
        assert proj.image_count() == 3


def test_image_properties_recorded(tmp_path: Path, write_image) -> None:
    src = tmp_path / "src"
    grey16 = write_image(
        src / "grey16.png", (np.arange(20 * 10).reshape(10, 20) * 300).astype(np.uint16)
    )
    rgba = write_image(src / "rgba.png", np.full((7, 9, 4), 200, np.uint8))
    rgb = write_image(src / "rgb.png", np.full((5, 6, 3), 10, np.uint8))
    grey8 = write_image(src / "grey8.png", np.full((4, 3), 1, np.uint8))
    jpg = write_image(src / "photo.jpg", np.full((8, 8, 3), 100, np.uint8))
    with Project.create(tmp_path / "proj") as proj:
        report = proj.add_images([grey16, rgba, rgb, grey8, jpg])
        assert report.failed == []
        got = {r.name: (r.width, r.height, r.bit_depth, r.channels) for r in proj.images()}
        assert got == {
            "grey16.png": (20, 10, 16, 1),
            "rgba.png": (9, 7, 8, 4),
            "rgb.png": (6, 5, 8, 3),
            "grey8.png": (3, 4, 8, 1),
            "photo.jpg": (8, 8, 8, 3),
        }
        fmts = {r.name: r.format.lower() for r in proj.images()}
        assert fmts["grey16.png"] == "png"
        assert fmts["photo.jpg"] in ("jpeg", "jpg")
        assert all(len(r.sha256) == 64 for r in proj.images())


def test_bad_files_reported_good_ones_imported(tmp_path: Path, make_images) -> None:
    src = tmp_path / "src"
    good = make_images(src, 2)
    zero = src / "zero.png"
    zero.write_bytes(b"")
    text = src / "text.jpg"
    text.write_text("hello, I am not a JPEG\n" * 10)
    full = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8))[1]
    truncated = src / "truncated.png"
    truncated.write_bytes(full.tobytes()[: len(full) // 2])
    calls = []
    with Project.create(tmp_path / "proj") as proj:
        report = proj.add_images([src], progress=lambda d, n: calls.append((d, n)))
        assert len(report.added) == 2
        assert {proj.image_path(i).resolve() for i in report.added} == {g.resolve() for g in good}
        failed = dict(report.failed)
        assert set(failed) == {zero.resolve(), text.resolve(), truncated.resolve()}
        for path, reason in report.failed:
            assert isinstance(reason, str) and len(reason) > 5, (path, reason)
        assert "empty" in failed[zero.resolve()].lower() or "zero" in failed[zero.resolve()].lower()
        # progress reaches the end even though the last files were bad
        assert calls[-1] == (5, 5)

        # a file that does not exist at all
        report = proj.add_images([src / "absent.png"])
        assert report.added == [] and len(report.failed) == 1


def test_cancel_import(tmp_path: Path, make_images) -> None:
    files = make_images(tmp_path / "src", 4)
    with Project.create(tmp_path / "proj") as proj:
        seen = []

        def should_cancel() -> bool:
            seen.append(1)
            return len(seen) > 2

        report = proj.add_images(files, should_cancel=should_cancel)
        assert report.cancelled
        assert len(report.added) == 2 == proj.image_count()


# -- missing files ------------------------------------------------------------------


def test_missing_and_relink(project: Project, tmp_path: Path, write_image) -> None:
    assert project.missing_images() == []
    ids = project.image_ids()
    moved_dir = tmp_path / "moved" / "deep"
    moved_dir.mkdir(parents=True)
    f0, f1, f2 = project.image_files[:3]
    shutil.move(f0, moved_dir / f0.name)
    shutil.move(f1, moved_dir / f1.name)
    f2.unlink()
    missing = project.missing_images()
    assert [r.id for r in missing] == ids[:3]
    assert project.stats()["missing"] == [r.path for r in missing]

    # relink to a different file's content is refused
    with pytest.raises(ValidationError, match="content differs") as info:
        project.relink(ids[0], project.image_files[4])
    assert project.image(ids[0]).path in str(info.value)
    with pytest.raises(ValidationError, match="no such file"):
        project.relink(ids[0], tmp_path / "nothing.png")

    project.relink(ids[0], moved_dir / f0.name)
    assert project.image_path(ids[0]).resolve() == (moved_dir / f0.name).resolve()
    assert [r.id for r in project.missing_images()] == ids[1:3]

    # a folder search finds the other moved one (by name and content), not the deleted one
    decoy = tmp_path / "moved" / f2.name  # same name as the deleted one, other content
    write_image(decoy, np.zeros((H, W, 3), np.uint8))
    assert project.relink_folder(tmp_path / "moved") == 1
    assert [r.id for r in project.missing_images()] == [ids[2]]
    assert project.image_path(ids[1]).resolve() == (moved_dir / f1.name).resolve()
    assert project.relink_folder(tmp_path / "moved") == 0


# -- classes ------------------------------------------------------------------------


def _annotate_for_class_ops(project: Project) -> tuple[list[int], dict[str, int]]:
    """Image 0: tag cat, cat box + dog box, cat landmarks, mask with cat and dog pixels.
    Image 1: tag dog, dog box, mask of dog only. Image 2: tag cat only."""
    ids = project.image_ids()
    c = _ids(project)
    face = _face(project)
    project.set_tags(ids[0], [c["cat"]])
    project.add_box(ids[0], Box(c["cat"], 1, 1, 10, 10))
    project.add_box(ids[0], Box(c["dog"], 2, 2, 12, 12))
    project.add_landmark_set(ids[0], LandmarkSet(face.id, _face_points(), c["cat"]))
    project.add_landmark_set(ids[0], LandmarkSet(face.id, _face_points(1), None))
    m0 = np.zeros((H, W), np.uint16)
    m0[:5, :5] = c["cat"]
    m0[10:, 10:] = c["dog"]
    project.set_mask(ids[0], m0)
    project.set_tags(ids[1], [c["dog"]])
    project.add_box(ids[1], Box(c["dog"], 0, 0, W, H))
    m1 = np.zeros((H, W), np.uint16)
    m1[3:6, 3:6] = c["dog"]
    project.set_mask(ids[1], m1)
    project.set_tags(ids[2], [c["cat"]])
    return ids, c


def test_add_rename_recolour_reorder(project: Project) -> None:
    c = _ids(project)
    assert list(c) == ["cat", "dog", "bird"]
    assert [x.position for x in project.classes()] == [0, 1, 2]
    with pytest.raises(ValidationError, match="already exists"):
        project.add_class("cat")
    with pytest.raises(ValidationError, match="empty"):
        project.add_class("   ")
    with pytest.raises(ValidationError, match="#rrggbb"):
        project.add_class("fish", "red")

    ids, _ = _annotate_for_class_ops(project)
    project.rename_class(c["cat"], "kitten")
    assert project.class_info(c["cat"]).name == "kitten"
    assert project.tags(ids[0]) == (c["cat"],)  # annotations follow the id
    with pytest.raises(ValidationError, match="merge instead"):
        project.rename_class(c["cat"], "dog")
    project.rename_class(c["cat"], "kitten")  # same name again is fine

    project.set_class_color(c["dog"], "#ABCDEF")
    assert project.class_info(c["dog"]).color == "#abcdef"
    with pytest.raises(ValidationError):
        project.set_class_color(c["dog"], "#12345")

    project.reorder_classes([c["bird"], c["cat"], c["dog"]])
    assert [x.name for x in project.classes()] == ["bird", "kitten", "dog"]
    with pytest.raises(ValidationError, match="exactly once"):
        project.reorder_classes([c["bird"], c["cat"]])
    with pytest.raises(ValidationError, match="exactly once"):
        project.reorder_classes([c["bird"], c["bird"], c["cat"]])
    # annotation counts unchanged by all of this
    assert project.class_usage(c["cat"]) == {"tags": 2, "boxes": 1, "landmarks": 1, "masks": 1}
    assert project.class_usage(c["dog"]) == {"tags": 1, "boxes": 2, "landmarks": 0, "masks": 2}


def test_merge_classes(project: Project) -> None:
    ids, c = _annotate_for_class_ops(project)
    m0_before = project.mask(ids[0])
    m1_before = project.mask(ids[1])
    project.merge_classes(c["dog"], c["cat"])
    assert [x.name for x in project.classes()] == ["cat", "bird"]
    assert project.tags(ids[0]) == (c["cat"],)
    assert project.tags(ids[1]) == (c["cat"],)
    assert [b.class_id for b in project.boxes(ids[0])] == [c["cat"], c["cat"]]
    assert [b.class_id for b in project.boxes(ids[1])] == [c["cat"]]
    assert [lm.class_id for lm in project.landmark_sets(ids[0])] == [c["cat"], None]
    m0, m1 = project.mask(ids[0]), project.mask(ids[1])
    expected0 = m0_before.copy()
    expected0[m0_before == c["dog"]] = c["cat"]
    np.testing.assert_array_equal(m0, expected0)
    np.testing.assert_array_equal(m1, np.where(m1_before == c["dog"], c["cat"], 0))
    assert project.class_usage(c["cat"]) == {"tags": 3, "boxes": 3, "landmarks": 1, "masks": 2}
    assert project.stats()["kinds"]["tags"] == 3
    with pytest.raises(ValidationError, match="unknown class"):
        project.class_info(c["dog"])
    with pytest.raises(ValidationError, match="itself"):
        project.merge_classes(c["cat"], c["cat"])


def test_merge_classes_multi_label_keeps_one_tag(tmp_path: Path, make_images) -> None:
    make_images(tmp_path / "src", 1)
    with Project.create(tmp_path / "p", multi_label=True) as proj:
        (iid,) = proj.add_images([tmp_path / "src"]).added
        a, b, x = proj.add_class("a"), proj.add_class("b"), proj.add_class("x")
        proj.set_tags(iid, [a.id, b.id, x.id])
        proj.merge_classes(b.id, a.id)
        assert proj.tags(iid) == (a.id, x.id)


def test_delete_class(project: Project) -> None:
    ids, c = _annotate_for_class_ops(project)
    m0_before = project.mask(ids[0])
    cat_box = project.boxes(ids[0])[0]
    dog_box = project.boxes(ids[0])[1]
    assert cat_box.class_id == c["cat"]
    project.delete_class(c["dog"])
    assert [x.name for x in project.classes()] == ["cat", "bird"]
    assert project.tags(ids[0]) == (c["cat"],)
    assert project.tags(ids[1]) == ()
    assert project.boxes(ids[0]) == (cat_box,)
    assert dog_box not in project.boxes(ids[0])
    assert project.boxes(ids[1]) == ()
    np.testing.assert_array_equal(
        project.mask(ids[0]), np.where(m0_before == c["dog"], 0, m0_before)
    )
    assert project.mask(ids[1]) is None  # all its pixels were dog: the mask is gone
    assert project.stats()["kinds"]["masks"] == 1

    project.delete_class(c["cat"])
    assert project.landmark_sets(ids[0])[0].class_id is None  # the class-less set stays
    assert len(project.landmark_sets(ids[0])) == 1
    assert project.mask(ids[0]) is None
    assert project.stats()["kinds"] == {
        "tags": 0,
        "boxes": 0,
        "landmarks": 1,
        "masks": 0,
        "objects": 0,
    }


# -- validation ---------------------------------------------------------------------


def test_validation_messages_name_image_and_problem(project: Project) -> None:
    ids = project.image_ids()
    iid = ids[0]
    path = project.image(iid).path
    c = _ids(project)
    face = _face(project)

    def check(fn, *words: str) -> None:
        with pytest.raises(ValidationError) as info:
            fn()
        msg = str(info.value)
        assert path in msg, msg
        for w in words:
            assert w in msg, (w, msg)

    check(lambda: project.add_box(iid, Box(c["cat"], -1, 0, 5, 5)), "outside the image", "32×24")
    check(lambda: project.add_box(iid, Box(c["cat"], 0, 0, 33, 5)), "outside the image")
    check(lambda: project.add_box(iid, Box(c["cat"], 0, 0, 5, 24.5)), "outside the image")
    check(lambda: project.add_box(iid, Box(c["cat"], 5, 5, 5, 9)), "empty")
    check(lambda: project.add_box(iid, Box(c["cat"], 6, 5, 4, 9)), "empty")
    check(lambda: project.add_box(iid, Box(c["cat"], 0, 0, float("nan"), 5)), "non-finite")
    check(lambda: project.add_box(iid, Box(999, 0, 0, 5, 5)), "unknown class id 999")
    check(lambda: project.set_tags(iid, [999]), "unknown class id 999")
    check(
        lambda: project.add_landmark_set(iid, LandmarkSet(face.id, _face_points()[:4])),
        "5 points",
        "got 4",
    )
    pts = list(_face_points())
    pts[1] = Point(40, 8)
    check(
        lambda: project.add_landmark_set(iid, LandmarkSet(face.id, tuple(pts))),
        "right_eye",
        "outside the image",
    )
    check(
        lambda: project.add_landmark_set(iid, LandmarkSet(face.id, _face_points(), 999)),
        "unknown class id 999",
    )
    pts[1] = Point(4, 4, 7)
    check(lambda: project.add_landmark_set(iid, LandmarkSet(face.id, tuple(pts))), "visibility 7")
    check(
        lambda: project.set_mask(iid, np.ones((H + 1, W), np.uint16)),
        f"mask is {W}×{H + 1} px",
        f"image is {W}×{H} px",
    )
    bad = np.zeros((H, W), np.uint16)
    bad[0, 0] = 999
    check(lambda: project.set_mask(iid, bad), "unknown class ids [999]")
    check(lambda: project.set_tags(iid, [c["cat"], c["dog"]]), "single-label", "2 tags")

    # nothing was stored by any of the refused edits
    assert project.annotations(iid) == ImageAnnotations(iid)
    # edges: a box on the border and points on the border are fine
    project.add_box(iid, Box(c["cat"], 0, 0, W, H))
    project.add_landmark_set(
        iid, LandmarkSet(face.id, (Point(0, 0), *_face_points()[1:4], Point(W, H)))
    )

    # updating an existing box is validated too
    box = project.boxes(iid)[0]
    check(lambda: project.update_box(Box(c["cat"], 0, 0, W + 1, H, box.id)), "outside the image")
    lms = project.landmark_sets(iid)[0]
    with pytest.raises(ValidationError, match="template cannot change"):
        project.update_landmark_set(LandmarkSet(face.id + 1, lms.points, None, lms.id))


def test_numpy_numbers_are_stored_as_plain_numbers(project: Project) -> None:
    """Coordinates from a model come as numpy scalars; they must not land as raw bytes."""
    iid = project.image_ids()[0]
    cid = np.int64(_ids(project)["cat"])
    face = _face(project)
    box = project.add_box(iid, Box(cid, *np.array([1, 2, 10.5, 11], np.float32)))
    assert project.boxes(iid) == (Box(int(cid), 1.0, 2.0, 10.5, 11.0, box.id),)
    project.update_box(Box(cid, np.float32(2), np.float32(2), np.float32(3), np.float32(4), box.id))
    pts = tuple(Point(np.float32(x), np.float32(y), np.int64(2)) for x, y, _ in [(1, 2, 0)] * 5)
    project.add_landmark_set(iid, LandmarkSet(face.id, pts))
    project.set_tags(iid, [cid])
    assert project.tags(iid) == (int(cid),)
    c = project.store.conn
    assert c.execute("SELECT typeof(x1), typeof(y2), typeof(class_id) FROM boxes").fetchall() == [
        ("real", "real", "integer")
    ]
    assert project.landmark_sets(iid)[0].points[0] == Point(1.0, 2.0, 2)
    assert project.boxes(iid)[0].xyxy == (2.0, 2.0, 3.0, 4.0)


def test_multi_label_tags(tmp_path: Path, make_images) -> None:
    make_images(tmp_path / "src", 2)
    with Project.create(tmp_path / "p", multi_label=True) as proj:
        assert proj.multi_label
        a, b = proj.add_images([tmp_path / "src"]).added
        x, y, z = (proj.add_class(n).id for n in "xyz")
        proj.set_tags(a, [z, x, z])
        assert proj.tags(a) == (x, z)  # deduplicated, class order
        proj.set_tags(b, [y])
        with pytest.raises(ValidationError, match="more than one class tag"):
            proj.multi_label = False
        assert proj.multi_label
        proj.set_tags(a, [x])
        proj.multi_label = False
        assert not proj.multi_label
        with pytest.raises(ValidationError, match="single-label"):
            proj.set_tags(a, [x, y])
        proj.set_tags(a, [])
        assert proj.tags(a) == ()


# -- queries --------------------------------------------------------------------------


def test_image_page_counts(project: Project) -> None:
    ids, c = _annotate_for_class_ops(project)
    page = project.image_page(0, 100)
    assert [s.image.id for s in page] == ids
    got = {
        s.image.id: (s.n_tags, s.n_boxes, s.n_landmarks, s.has_mask, s.is_labelled) for s in page
    }
    assert got[ids[0]] == (1, 2, 2, True, True)
    assert got[ids[1]] == (1, 1, 0, True, True)
    assert got[ids[2]] == (1, 0, 0, False, True)
    assert got[ids[3]] == (0, 0, 0, False, False)
    assert [s.image.id for s in project.image_page(2, 3)] == ids[2:5]
    assert [s.image.id for s in project.image_page(5, 10)] == ids[5:]
    assert project.image_page(6, 10) == []
    assert [r.id for r in project.images(1, 2)] == ids[1:3]


def test_stats_counts(project: Project) -> None:
    ids, c = _annotate_for_class_ops(project)
    project.set_splits({ids[0]: "train", ids[1]: "train", ids[2]: "val"})
    s = project.stats()
    assert s["images"] == 6
    assert s["labelled_images"] == 3
    assert s["kinds"] == {"tags": 3, "boxes": 3, "landmarks": 2, "masks": 2, "objects": 0}
    assert s["classes"]["cat"] == {"tags": 2, "boxes": 1, "landmarks": 1, "masks": 1}
    assert s["classes"]["dog"] == {"tags": 1, "boxes": 2, "landmarks": 0, "masks": 2}
    assert s["classes"]["bird"] == {"tags": 0, "boxes": 0, "landmarks": 0, "masks": 0}
    assert s["splits"] == {"train": 2, "val": 1, "None": 3}
    assert s["templates"] == ["Face 5"]
    assert s["missing"] == []
    with pytest.raises(ValidationError, match="unknown split"):
        project.set_splits({ids[0]: "training"})


def test_remove_images_cascades(project: Project) -> None:
    ids, _ = _annotate_for_class_ops(project)
    project.remove_images([ids[0], ids[1]])
    assert project.image_ids() == ids[2:]
    s = project.stats()["kinds"]
    assert s == {"tags": 1, "boxes": 0, "landmarks": 0, "masks": 0, "objects": 0}
    assert all(f.exists() for f in project.image_files)


# -- templates -------------------------------------------------------------------------


def test_builtin_templates() -> None:
    by_name = {t.name: t for t in builtin_templates()}
    body = by_name["COCO body 17"]
    assert len(body.points) == 17
    assert len(body.flip_pairs) == 8
    assert body.points[0] == "nose"
    for a, b in body.flip_pairs:
        assert body.points[a].startswith("left_") and body.points[b].startswith("right_")
        assert body.points[a][5:] == body.points[b][6:]
    perm = body.flip_permutation()
    assert sorted(perm) == list(range(17)) and perm[1] == 2 and perm[0] == 0
    face = by_name["Face 5"]
    assert len(face.points) == 5
    assert {face.points[a] for a, _ in face.flip_pairs} == {"left_eye", "left_mouth"}


def test_templates_in_project(project: Project) -> None:
    face = _face(project)
    assert face.id is not None
    assert project.template(face.id) == face
    assert (
        project.ensure_template(
            LandmarkTemplate(face.name, face.points, face.skeleton, face.flip_pairs)
        )
        == face
    )
    with pytest.raises(ValidationError, match="different landmark template"):
        project.ensure_template(LandmarkTemplate(face.name, ("a", "b")))
    with pytest.raises(ValidationError, match="already exists"):
        project.add_template(LandmarkTemplate(face.name, ("a",)))
    iid = project.image_ids()[0]
    project.add_landmark_set(iid, LandmarkSet(face.id, _face_points()))
    with pytest.raises(ValidationError, match="used by 1 landmark sets"):
        project.delete_template(face.id)
    with pytest.raises(ValidationError, match="must join two different points"):
        LandmarkTemplate("bad", ("a", "b"), skeleton=((0, 2),))


# -- masks -----------------------------------------------------------------------------


@pytest.mark.parametrize("top", [1, 255, 256, 1000, 65535])
def test_mask_encode_decode_roundtrip(top: int) -> None:
    rng = np.random.default_rng(top)
    mask = rng.integers(0, top + 1, (13, 17)).astype(np.int64)
    mask[0, 0] = top
    png, present = encode_mask(mask)
    assert isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_mask(png)
    assert back.dtype == np.uint16 and back.shape == (13, 17)
    np.testing.assert_array_equal(back, mask)
    assert present == sorted(int(v) for v in np.unique(mask) if v)


def test_mask_encode_rejects_bad_input() -> None:
    with pytest.raises(ValidationError, match="2-D"):
        encode_mask(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValidationError, match="0..65535"):
        encode_mask(np.full((2, 2), 70000, np.int64))
    with pytest.raises(ValidationError, match="0..65535"):
        encode_mask(np.full((2, 2), -1, np.int64))


def test_project_mask_with_large_class_ids(project: Project) -> None:
    iid = project.image_ids()[0]
    big = project.add_class("big", class_id=300)
    assert big.id == 300
    c = _ids(project)
    mask = np.zeros((H, W), np.uint16)
    mask[:, :10] = 300
    mask[:, 20:] = c["cat"]
    project.set_mask(iid, mask)
    np.testing.assert_array_equal(project.mask(iid), mask)
    assert project.class_usage(300)["masks"] == 1
    project.merge_classes(300, c["dog"])
    np.testing.assert_array_equal(project.mask(iid), np.where(mask == 300, c["dog"], mask))
    project.set_mask(iid, np.zeros((H, W), np.uint16))
    assert project.mask(iid) is None
    project.set_mask(iid, mask.clip(0, c["cat"]))
    project.set_mask(iid, None)
    assert project.mask(iid) is None


def test_set_annotations_and_clear(project: Project) -> None:
    ids, c = _annotate_for_class_ops(project)
    ann = project.annotations(ids[0])
    assert not ann.is_empty
    copied = tuple(Box(b.class_id, *b.xyxy) for b in ann.boxes)  # no ids: new boxes
    project.set_annotations(ImageAnnotations(ids[3], ann.tags, copied))
    assert [b.xyxy for b in project.boxes(ids[3])] == [b.xyxy for b in ann.boxes]
    project.clear_annotations(ids[0])
    assert project.annotations(ids[0]).is_empty
    # set_annotations with a bad part changes nothing (one transaction)
    before = project.annotations(ids[3])
    with pytest.raises(ValidationError):
        project.set_annotations(
            ImageAnnotations(ids[3], (c["cat"],), (Box(c["cat"], 0, 0, 99, 99),))
        )
    assert project.annotations(ids[3]) == before


def test_runs_with_a_model_are_listed_newest_first(project):
    from tlstudio.core.runs import RunStore

    runs = RunStore(project)
    first, failed, cancelled = (runs.start("classify", "resnet18", {}) for _ in range(3))
    runs.update(first, status="finished", checkpoint=f"runs/{first}/model.pt")
    runs.update(failed, status="failed", error="boom")
    runs.update(cancelled, status="cancelled", checkpoint=f"runs/{cancelled}/model.pt")
    assert [r.id for r in runs.with_model()] == [cancelled, first]
