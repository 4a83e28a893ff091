"""Training throughput of tlstudio's Trainer on the project's images against a plain
PyTorch loop on the same files, and the data loading alone (run on demand; prints
figures, asserts nothing).

    python tests/bench/bench_trainer.py [--model resnet18] [--input 128] [--images 64]
                                        [--image-size 256] [--batch 16] [--pairs 3]
                                        [--threads 1]

A demo project (synthetic shapes, ``--image-size`` px PNGs) in a temporary folder; the
same classifier (``--model`` from random weights, full fine-tuning, linear head) trained
from the same initial weights for one epoch over the train split, batch ``--batch``,
AdamW at a constant learning rate, on the CPU. Three comparisons, each run interleaved
(A, B, A, B, …) with per-pair ratios B/A (min / median / max):

1. loader alone: every train image read, resized to ``--input`` px and normalised, by a
   plain OpenCV loader (``cv2.imread`` → RGB → ``cv2.resize`` with the same
   interpolation rule → float32 normalisation) against the app's
   :class:`~tlstudio.ml.data.ProjectDataset` (imageio's decoders, the display window);
   CPU ms per image;
2. the whole fit: a plain loop (``DataLoader`` over the plain loader → model →
   cross-entropy → backward → step) against ``runner``'s way: ``ProjectDataset`` +
   :class:`~tlstudio.ml.trainer.Trainer`;
3. the loop alone: the plain loop against the Trainer, both over ``ProjectDataset``
   (the Trainer's per-batch work: dict targets, cancel/pause checks, events, freeze
   handling).

Every timer starts with the model built and stops when the last step is done: the
DataLoader, optimizer and (for the Trainer) its setup are inside it for both ways.
Neither way validates or writes checkpoints.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from benchkit import Way, compare, load_average, print_header  # noqa: E402

CLASSES_SEED = 0


class PlainLoader:
    """Images read with OpenCV alone, the way a hand-written script would."""

    def __init__(self, paths, labels, size: int, mean, std):
        import torch

        self.paths, self.labels, self.size = list(paths), list(labels), size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import cv2
        import torch

        bgr = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        shrink = self.size <= h and self.size <= w
        rgb = cv2.resize(rgb, (self.size, self.size),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)  # fmt: skip
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, torch.tensor(self.labels[i])


class TargetsAsLabels:
    """ProjectDataset samples as (image, label) pairs for the plain loop."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, target = self.dataset[i]
        return image, target["label"]


def plain_fit(model, dataset, batch: int, seed: int) -> None:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for xb, yb in loader:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()


def trainer_fit(model, dataset, batch: int, seed: int) -> None:
    from tlstudio.ml.train_config import TrainConfig
    from tlstudio.ml.trainer import Trainer

    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, weight_decay=1e-4, schedule="none",
                      freeze=0, seed=seed, device="cpu", amp=False, channels_last=False,
                      num_workers=0)  # fmt: skip
    ended = Trainer(model, dataset, None, cfg).fit()
    if ended.status != "finished":
        raise RuntimeError(f"the Trainer did not finish: {ended}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", help="backbone (default resnet18)")
    ap.add_argument("--input", type=int, default=128, help="network input side in px")
    ap.add_argument("--images", type=int, default=64, help="demo images (70%% train)")
    ap.add_argument("--image-size", type=int, default=256, help="demo image side in px")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()

    from tlstudio.runtime import threads

    threads.prepare_environment()
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import data as data_mod
    from tlstudio.ml.architectures import get_spec
    from tlstudio.ml.backbones import build_backbone
    from tlstudio.ml.tasks.factory import build_task_model
    from tlstudio.ml.threads import apply

    apply(threads.plan(args.threads, gui=False))
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=args.images,
                                      size=args.image_size)  # fmt: skip
        spec = get_spec(args.model)
        train_ds, _ = data_mod.make_datasets(
            project, "classify", args.input, spec.mean, spec.std, None
        )
        plain_ds = PlainLoader([it.path for it in train_ds.items], train_ds.class_labels(),
                               args.input, spec.mean, spec.std)  # fmt: skip
        n = len(train_ds)
        print_header(
            f"{args.model}, weights none, full fine-tuning, input {args.input} px, batch "
            f"{args.batch}, {n} train images of {args.image_size} px (PNG), one epoch per "
            f"run, {torch.get_num_threads()} torch thread(s), CPU"
        )
        torch.manual_seed(CLASSES_SEED)
        init = build_task_model("classify", build_backbone(args.model, "none"),
                                num_classes=len(train_ds.class_names))  # fmt: skip

        def loader(ds):
            def run() -> dict:
                c0 = time.process_time()
                for i in range(len(ds)):
                    ds[i]
                return {"cpu_ms_per_image": (time.process_time() - c0) / len(ds) * 1000}

            return run

        def fit(fn, ds):
            def run() -> dict:
                model = copy.deepcopy(init)  # outside the timer: both start from a model
                t0 = time.perf_counter()
                fn(model, ds, args.batch, 0)
                return {"images_per_s": n / (time.perf_counter() - t0)}

            return run

        print("\n1. loader alone: plain OpenCV vs the app's ProjectDataset")
        compare(args.pairs, Way("plain cv2 loader", loader(plain_ds)),
                Way("ProjectDataset", loader(train_ds)), keys=("cpu_ms_per_image", "wall_s"),
                warmup=True)  # fmt: skip
        print("\n2. whole fit: plain loop + plain loader vs Trainer + ProjectDataset")
        compare(args.pairs, Way("plain loop, cv2", fit(plain_fit, plain_ds)),
                Way("Trainer, ProjectDataset", fit(trainer_fit, train_ds)),
                keys=("images_per_s", "wall_s", "cpu_s"), warmup=True)  # fmt: skip
        print("\n3. the loop alone, both over ProjectDataset: plain loop vs Trainer")
        compare(args.pairs, Way("plain loop", fit(plain_fit, TargetsAsLabels(train_ds))),
                Way("Trainer", fit(trainer_fit, train_ds)),
                keys=("images_per_s", "wall_s", "cpu_s"))  # fmt: skip
        print(f"\nload average at the end: {load_average()}")
        project.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
