"""Transfer learning vs training from scratch on a small real data set (run on demand;
prints figures, asserts nothing).

    python tests/bench/bench_transfer.py [--per-class 50] [--epochs 12] [--input-size 112]
                                         [--val-per-class 10] [--test-per-class 100]
                                         [--heads logreg] [--threads 2] [--seed 0]

Data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (idx files under
/usr/share/datasets/fashion-mnist, read with gzip + numpy). A seeded draw of
``--per-class`` training images per class (train split) and ``--val-per-class`` (val
split, picks the best epoch) from the official training file, and ``--test-per-class``
from the official test file (test split, used for nothing but the final score). They
are written as 28×28 grey PNGs into a temporary tlstudio project and upsampled to
``--input-size`` by the dataset like any project image (default 112 px, not the
backbone's 224: at 224 px training from scratch takes about 4× longer on a CPU).

Ways, all through the real engine (:mod:`tlstudio.ml.experiments`, ``runner``):

- pretrained: EfficientNet-Lite0 with its bundled ImageNet weights, fully frozen, a
  linear head trained on cached features (the fast path);
- scratch: the same architecture from random weights, every layer trained
  (:func:`experiments.scratch_spec`);
- the scikit-learn head(s) of ``--heads`` on the same cached features;
- a diagnostic row: the scratch model scored again after its BatchNorm running
  statistics were re-estimated on the train split (see
  :func:`recalibrated_test_accuracy`).

Budget: the SAME NUMBER OF EPOCHS (``--epochs``) for the pretrained head and the
scratch network, same batch (16), AdamW lr 1e-3, cosine schedule, no augmentation; wall
times are printed so the very different costs show. Accuracy is on the test split.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import load_average, print_header  # noqa: E402

from tlstudio.core.project import Project  # noqa: E402
from tlstudio.core.runs import RunStore  # noqa: E402
from tlstudio.ml import data as data_mod  # noqa: E402
from tlstudio.ml import experiments as X  # noqa: E402
from tlstudio.ml import runner  # noqa: E402
from tlstudio.ml.backbones import get_spec  # noqa: E402
from tlstudio.ml.collate import collate  # noqa: E402
from tlstudio.ml.runner import RunSpec  # noqa: E402
from tlstudio.ml.trainer import TrainConfig  # noqa: E402

DATA = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")  # fmt: skip
BACKBONE = "efficientnet_lite0"


def read_idx(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """N×28×28 uint8 images and N uint8 labels from idx files (gzip)."""
    with gzip.open(images, "rb") as f:
        raw = f.read()
    magic, n, h, w = np.frombuffer(raw[:16], ">u4")
    if magic != 2051:
        raise ValueError(f"{images}: not an idx image file")
    x = np.frombuffer(raw[16:], np.uint8).reshape(int(n), int(h), int(w))
    with gzip.open(labels, "rb") as f:
        raw = f.read()
    magic, n2 = np.frombuffer(raw[:8], ">u4")
    if magic != 2049 or n2 != n:
        raise ValueError(f"{labels}: not the idx label file of {images.name}")
    return x, np.frombuffer(raw[8:], np.uint8)


def draw(y: np.ndarray, per_class: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Seeded indices per class (``per_class`` each)."""
    return [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(len(CLASSES))]


def build_project(root: Path, args: argparse.Namespace) -> tuple[Project, int]:
    rng = np.random.default_rng(args.seed)
    x_tr, y_tr = read_idx(*(DATA / f for f in FILES["train"]))
    x_te, y_te = read_idx(*(DATA / f for f in FILES["test"]))
    picks: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    n_dev = args.per_class + args.val_per_class
    dev = draw(y_tr, n_dev, rng)
    picks.append(("train", x_tr, y_tr, np.concatenate([d[: args.per_class] for d in dev])))
    picks.append(("val", x_tr, y_tr, np.concatenate([d[args.per_class :] for d in dev])))
    picks.append(("test", x_te, y_te, np.concatenate(draw(y_te, args.test_per_class, rng))))
    project = Project.create(root / "fmnist")
    class_ids = [project.add_class(name).id for name in CLASSES]
    label_of: dict[str, tuple[int, str]] = {}
    for split, xs, ys, idx in picks:
        folder = project.root / "images" / split
        folder.mkdir(parents=True)
        for i in idx:
            path = folder / f"{split}_{int(i):05d}.png"
            cv2.imwrite(str(path), xs[i])
            label_of[path.name] = (int(ys[i]), split)
    report = project.add_images([project.root / "images"])
    tags, splits = {}, {}
    for image_id in report.added:
        label, split = label_of[project.image(image_id).name]
        tags[image_id], splits[image_id] = label, split
    with project.transaction():
        for image_id, label in tags.items():
            project.set_tags(image_id, [class_ids[label]])
    project.set_splits(splits)
    return project, len(report.duplicates)


def test_accuracy(project: Project, run_id: int) -> float:
    return float(runner.evaluate(project, run_id, "test", device="cpu")["summary"]["accuracy"])


def recalibrated_test_accuracy(project: Project, run_id: int) -> float:
    """Test accuracy of a run's model after re-estimating every BatchNorm's running
    statistics on the train split (cumulative average, no gradient step): a diagnostic
    that separates what the weights learned from stale running statistics."""
    model, spec = runner.load_run_model(project, run_id)
    bspec = get_spec(spec.backbone)
    size = spec.resolved_input_size
    train_ds, _ = data_mod.make_datasets(project, "classify", size, bspec.mean, bspec.std, None)
    test_ids = [r.id for r in project.images_in_split("test")]
    test_ds = data_mod.ProjectDataset(project, "classify", test_ids, size, bspec.mean, bspec.std)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the batches below
    loader = DataLoader(train_ds, batch_size=32, collate_fn=collate)
    model.train()
    with torch.no_grad():
        for images, _ in loader:
            model(images)
    model.eval()
    hits = []
    with torch.no_grad():
        for images, targets in DataLoader(test_ds, batch_size=64, collate_fn=collate):
            pred = model(images).argmax(1)
            hits += (pred == torch.stack([t["label"] for t in targets])).tolist()
    return float(np.mean(hits))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=50, help="training images per class")
    ap.add_argument("--val-per-class", type=int, default=10)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=12, help="epochs of BOTH trained ways")
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--heads", default="logreg", help="comma-separated scikit-learn heads")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print_header("pretrained vs scratch on Fashion-MNIST")
    missing = [f for pair in FILES.values() for f in pair if not (DATA / f).is_file()]
    if missing:
        print(f"Fashion-MNIST is not installed ({DATA / missing[0]} is missing).")
        print("Install it with:  sudo apt-get install dataset-fashion-mnist")
        return 0
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        project, dups = build_project(Path(tmp), args)
        counts = {s: len(project.images_in_split(s)) for s in ("train", "val", "test")}
        print(
            f"Fashion-MNIST: {counts['train']} train ({args.per_class}/class), {counts['val']} val, "
            f"{counts['test']} test images (28 px grey → {args.input_size} px), "
            f"{dups} duplicate(s) skipped, project built in {time.perf_counter() - t0:.1f} s; "
            f"{torch.get_num_threads()} torch threads, CPU"
        )
        cfg = TrainConfig(epochs=args.epochs, batch_size=16, lr=1e-3, seed=args.seed, device="cpu")
        spec = RunSpec("classify", BACKBONE, "bundled", cfg, input_size=args.input_size)
        rows = []

        out = {}
        for name, s in (("pretrained", spec), ("scratch", X.scratch_spec(spec))):
            t0 = time.perf_counter()
            res = runner.train(project, s)
            wall = time.perf_counter() - t0
            out[name] = (res, wall)
            print(f"  {name}: {wall:.1f} s, val accuracy {res.metrics.get('accuracy', float('nan')):.3f}",
                  flush=True)  # fmt: skip
        pre, pre_wall = out["pretrained"]
        scr, scr_wall = out["scratch"]
        rows.append(("pretrained, frozen, linear head (cached features)", args.epochs, pre_wall,
                     pre.metrics.get("accuracy"), test_accuracy(project, pre.run_id)))  # fmt: skip
        rows.append(("scratch, random init, all layers trained", args.epochs, scr_wall,
                     scr.metrics.get("accuracy"), test_accuracy(project, scr.run_id)))  # fmt: skip
        rows.append(("  the same, BN statistics re-estimated on train (*)", args.epochs, scr_wall,
                     float("nan"), recalibrated_test_accuracy(project, scr.run_id)))  # fmt: skip

        runs = RunStore(project)
        test_ids = [r.id for r in project.images_in_split("test")]
        for head in [h.strip() for h in args.heads.split(",") if h.strip()]:
            t0 = time.perf_counter()
            run_id, metrics = X.fit_sklearn_run(
                project, BACKBONE, "bundled", head, args.input_size, seed=args.seed, device="cpu"
            )
            wall = time.perf_counter() - t0
            X.predict_sklearn_run(project, run_id, test_ids, device="cpu")
            hits = [
                runs.prediction(run_id, i).payload["class_id"] == project.tags(i)[0]
                for i in test_ids
            ]
            rows.append((f"pretrained, frozen, sklearn {head} (cached features)", "-", wall,
                         metrics.get("accuracy"), float(np.mean(hits))))  # fmt: skip

        print()
        print(f"{'way':<56}{'epochs':>7}{'train s':>9}{'val acc':>9}{'test acc':>10}")
        for name, epochs, wall, val, test in rows:
            print(f"{name:<56}{epochs!s:>7}{wall:>9.1f}{val:>9.3f}{test:>10.3f}")
        print(
            "(pretrained train s includes the one-off feature extraction of train + val; "
            "sklearn train s reuses it from the cache)"
        )
        print(
            "(*) diagnostic, not a training method: the scratch model's weights with every "
            "BatchNorm's running mean/var recomputed over the train split; a large gap to the "
            "row above means the running statistics, not the weights, failed"
        )
        project.close()
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
