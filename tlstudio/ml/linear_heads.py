"""Few-shot heads as ordinary run models.

A head fitted in seconds on cached backbone features (logistic regression, linear SVM,
class prototypes, k nearest neighbours; :func:`tlstudio.ml.features.fit_sklearn_head`)
is saved as a :class:`~tlstudio.ml.tasks.classify.ClassifierModel` over the frozen
backbone, so evaluate, predict, inspect, Grad-CAM and ONNX export treat it like any run:

- logistic regression and linear SVM become the classifier's ``nn.Linear`` with the
  feature standardisation folded in (W' = W / σ, b' = b − W·μ / σ): the same logits, so
  the same probabilities (logistic: softmax, or sigmoid for two classes, as
  scikit-learn; SVM: softmax of the decision values, without Platt scaling);
- prototypes (nearest class mean in cosine space after centring on the training mean)
  become ``nn.Linear`` too: logit_k = p_k · (x − c) / (τ · s̄), p_k the unit class mean,
  τ = 0.1 and s̄ the mean length of the centred training features. The class ranking is
  the prototype's exactly (the length of x − c is the same for every class); the
  probabilities use the training mean length s̄ instead of each image's own, which
  the temperature fitted on the val split then calibrates;
- k nearest neighbours keep their neighbours: the training features are stored in the
  model file as buffers of a :class:`NeighbourVote` head (cosine distance,
  distance-weighted votes, as scikit-learn's ``KNeighborsClassifier``).

Classes without a training example get weight 0 and bias :data:`ABSENT_LOGIT`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlstudio.core.project import Project
from tlstudio.core.runs import RunRecord, RunStore

if TYPE_CHECKING:
    from .tasks.classify import ClassifierModel

#: heads that are one linear layer on the pooled features
LINEAR_KINDS = ("logreg", "linear_svm", "prototype")
#: the logit of a class no training image has (probability ~0 after the softmax)
ABSENT_LOGIT = -1e4


class NeighbourVote(nn.Module):
    """k-nearest-neighbour head: pooled features N×D → log class probabilities N×C.

    Buffers: ``keys`` (M stored training features, L2-normalised) and ``votes`` (M×C
    one-hot classes). The ``k`` most cosine-similar keys vote with weight 1 / cosine
    distance (distances below 1e-6 count as 1e-6); probabilities are the normalised
    vote sums. The output is the log of the vote sums, so the classifier's softmax gives
    those probabilities exactly, and a class's score still moves with the image when all
    k neighbours agree (Grad-CAM needs that gradient)."""

    keys: Tensor  # buffers, registered in __init__
    votes: Tensor

    def __init__(self, in_features: int, num_classes: int, neighbours: int, k: int = 5):
        super().__init__()
        if neighbours < 1:
            raise ValueError(f"a neighbour head needs stored features, got {neighbours}")
        self.k = int(max(1, min(k, neighbours)))
        self.register_buffer("keys", torch.zeros(int(neighbours), int(in_features)))
        self.register_buffer("votes", torch.zeros(int(neighbours), int(num_classes)))

    def fit(self, features: np.ndarray, labels: np.ndarray) -> NeighbourVote:
        """Store ``features`` (M×D) and their class indices ``labels`` (M ints)."""
        keys = F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32), dim=1)
        votes = F.one_hot(torch.as_tensor(np.asarray(labels), dtype=torch.int64),
                          self.votes.shape[1]).float()  # fmt: skip
        self.keys.copy_(keys)
        self.votes.copy_(votes)
        return self

    def forward(self, x: Tensor) -> Tensor:
        sims = F.normalize(x.float(), dim=1) @ self.keys.T
        top, index = sims.topk(self.k, dim=1)
        weight = 1.0 / (1.0 - top).clamp_min(1e-6)
        votes = (weight.unsqueeze(-1) * self.votes[index]).sum(dim=1)
        return torch.log(votes.clamp_min(1e-12))


def linear_weights(
    kind: str, X: np.ndarray, y: np.ndarray, num_classes: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(W C×D, b C) float32 of the linear layer equal to head ``kind`` (one of
    :data:`LINEAR_KINDS`) fitted on features ``X`` (N×D) and class indices ``y``."""
    from .features import fit_sklearn_head

    if kind not in LINEAR_KINDS:
        raise ValueError(f"{kind!r} is not a linear head; use one of {', '.join(LINEAR_KINDS)}")
    X = np.asarray(X, np.float64)
    head = fit_sklearn_head(kind, X, y, num_classes, seed=seed, calibrate=False)  # type: ignore[arg-type]
    d = X.shape[1]
    W = np.zeros((num_classes, d))
    b = np.full(num_classes, ABSENT_LOGIT)
    seen = head.classes
    if len(seen) == 1:  # one class only: it always wins
        b[seen[0]] = 0.0
        return W.astype(np.float32), b.astype(np.float32)
    if kind == "prototype":
        proto = head.model
        center = proto.center_.reshape(-1)
        scale = float(np.mean(np.linalg.norm(X - center, axis=1))) * proto.temperature
        Wk = proto.protos_ / max(scale, 1e-12)
        bk = -(Wk @ center)
    else:
        scaler, linear = head.model.steps[0][1], head.model.steps[-1][1]
        coef, intercept = np.atleast_2d(linear.coef_), np.atleast_1d(linear.intercept_)
        sigma = scaler.scale_
        Wk = coef / sigma
        bk = intercept - Wk @ scaler.mean_
        if len(Wk) == 1:  # two classes: sklearn has one decision value z for the second
            half = 1.0 if kind == "logreg" else 0.5  # softmax([0, z]) = sigmoid(z)
            lo = 0.0 if kind == "logreg" else -0.5
            Wk = np.stack([lo * Wk[0], half * Wk[0]])
            bk = np.array([lo * bk[0], half * bk[0]])
    W[seen] = Wk
    b[seen] = bk
    return W.astype(np.float32), b.astype(np.float32)


def model_options(kind: str, n_train: int) -> dict[str, Any]:
    """The ``RunSpec.model_options`` of a few-shot run's classifier."""
    if kind == "knn":
        return {"head": "knn", "neighbours": int(n_train), "knn_k": 5, "dropout": 0.0}
    return {"head": "linear", "dropout": 0.0}


def head_model(
    backbone: nn.Module,
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    seed: int = 0,
) -> ClassifierModel:
    """A ClassifierModel over ``backbone`` whose head is the fitted few-shot head (eval
    mode; the backbone is expected frozen: its weights are the pretrained ones)."""
    from .tasks.classify import ClassifierModel
    from .tasks.factory import build_task_model

    options = model_options(kind, len(y))
    model = build_task_model("classify", backbone, num_classes=num_classes, **options)
    if not isinstance(model, ClassifierModel):
        raise TypeError(f"a classify model is a ClassifierModel, got {type(model).__name__}")
    if kind == "knn":
        vote = model.head[0]
        if not isinstance(vote, NeighbourVote):
            raise TypeError(f"a knn head starts with a NeighbourVote, got {type(vote).__name__}")
        vote.fit(X, y)
    else:
        W, b = linear_weights(kind, X, y, num_classes, seed=seed)
        linear = model.head[-1]
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"a linear head ends with nn.Linear, got {type(linear).__name__}")
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
    return model.eval()


def save_head_model(project: Project, run_id: int) -> RunRecord:
    """Give a few-shot run recorded before heads were saved as models its ``model.pt``
    (rebuilt from its ``sklearn_head.npz``: the training features and labels) and
    return its updated record."""
    import os

    from .checkpoints import save_atomic
    from .experiments import _build_frozen_backbone, load_head_file
    from .runner import MODEL_FILE, RunError, RunSpec

    runs = RunStore(project)
    rec = runs.get(run_id)
    kind, seed, X, y = load_head_file(project, rec)
    config = dict(rec.config)
    config["model_options"] = model_options(kind, len(y))
    spec = RunSpec.from_dict(config)
    if rec.status != "finished":
        raise RunError(f"run {run_id} has no saved model (status {rec.status})")
    backbone = _build_frozen_backbone(spec.backbone, spec.weights, seed)
    model = head_model(backbone, kind, X, y, len(project.classes()), seed=seed)
    path = runs.run_dir(run_id) / MODEL_FILE
    save_atomic({"model": model.state_dict(), "spec": spec.to_dict()}, path)
    runs.update_config(run_id, model_options=config["model_options"])
    runs.update(run_id, checkpoint=os.path.relpath(path, project.root))
    return runs.get(run_id)


def predict_cached(
    project: Project,
    run_id: int,
    image_ids: Sequence[int] | None = None,
    *,
    device: str = "auto",
    token: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Store a frozen-backbone classifier's predictions for ``image_ids`` (default: all
    images), reading features from the feature cache (computing the missing ones), in
    one commit: seconds for a few hundred images whose features are cached. Returns the
    number of images predicted. Raises RunError for runs whose backbone was trained."""
    from . import data as data_mod
    from .backbones import get_spec
    from .devices import select_device
    from .features import FeatureCache, extract_features, weights_id
    from .runner import RunError, _payload, _weights_choice, load_run_model, uses_feature_cache
    from .tasks.classify import ClassifierModel

    model, spec = load_run_model(project, run_id)
    if (
        spec.task != "classify"
        or not uses_feature_cache(spec)
        or not isinstance(model, ClassifierModel)  # an ensemble has no single head
    ):
        raise RunError(f"run {run_id} does not classify from cached features")
    bspec = get_spec(spec.backbone)
    ids = list(image_ids) if image_ids is not None else project.image_ids()
    # autoencode takes every image, labelled or not; its pixels are classify's
    ds = data_mod.ProjectDataset(
        project, "autoencode", ids, spec.resolved_input_size, bspec.mean, bspec.std
    )
    dev = select_device(device)
    model.to(dev)
    wid = weights_id(spec.backbone, _weights_choice(spec.weights))
    X, _ = extract_features(
        model.backbone, ds, FeatureCache(project.cache_dir), wid,
        device=dev, token=token, progress=progress,
    )  # fmt: skip
    with torch.no_grad():
        probs = model.probabilities(model.head(torch.from_numpy(X).to(dev)).float()).cpu()
    classes = project.classes()
    runs = RunStore(project)
    with project.transaction():
        for image_id, p in zip(ds.image_ids, probs, strict=True):
            payload, mask, score = _payload("classify", {"probs": p}, classes)
            runs.set_prediction(run_id, image_id, payload, mask, score)
    return len(ds)
