"""Weight sources: status, import with key/shape checks, safe loading, download (faked)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from pathlib import Path

import pytest
import torch

from tlstudio.core.errors import TlsError
from tlstudio.ml import weights as W
from tlstudio.ml.backbones import build_architecture, build_backbone, build_imagenet_classifier

NAME = "mobilenet_v3_small"  # smallest torchvision model in the registry
FILE = "mobilenet_v3_small-047dcff4.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty torch hub dir so nothing touches the real cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))
    return tmp_path / "torch" / "hub"


@pytest.fixture(scope="module")
def good_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_architecture(NAME).state_dict()


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_status_sources(hub: Path) -> None:
    st = W.weights_status(NAME)
    assert (st.bundled, st.cached, st.none) == (False, False, True)
    assert st.as_dict() == {"bundled": False, "cached": False, "none": True}
    assert st.cached_path == hub / "checkpoints" / FILE
    assert st.url is not None and st.url.endswith("/" + FILE)
    assert W.hub_checkpoint_dir() == hub / "checkpoints"

    lite = W.weights_status("efficientnet_lite0")
    assert lite.bundled and lite.available("bundled") and not lite.cached
    assert (
        lite.bundled_path is not None
        and lite.bundled_path.name == "efficientnet-lite0-57934424.pth"
    )
    assert lite.url is None


def test_import_good_state_dict_then_cached(
    tmp_path: Path, good_state: dict[str, torch.Tensor], hub: Path
) -> None:
    src = _save(good_state, tmp_path / "mine.pt")
    dest = W.import_weights_file(NAME, src)
    assert dest == hub / "checkpoints" / FILE and dest.is_file()
    assert W.weights_status(NAME).cached
    assert not list(dest.parent.glob("*.part"))
    full = build_imagenet_classifier(NAME, weights="cached").state_dict()
    assert all(torch.equal(full[k], v) for k, v in good_state.items())
    backbone = build_backbone(NAME, weights="cached")
    stem_conv = backbone.stages[0][0][0]  # features.0.0
    assert torch.equal(stem_conv.weight, good_state["features.0.0.weight"])


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module_prefix"])
def test_import_unwraps_checkpoints(
    tmp_path: Path, good_state: dict[str, torch.Tensor], wrap: str
) -> None:
    if wrap == "module_prefix":
        obj: object = {f"module.{k}": v for k, v in good_state.items()}
    else:
        obj = {wrap: good_state, "epoch": 3}
    dest = W.import_weights_file(NAME, _save(obj, tmp_path / "ckpt.pth"))
    assert set(W.load_state_dict_safely(dest)) == set(good_state)


def test_import_mismatched_lists_problems(
    tmp_path: Path, good_state: dict[str, torch.Tensor]
) -> None:
    bad = dict(good_state)
    del bad["classifier.3.weight"]
    del bad["classifier.3.bias"]
    bad["features.0.0.weight"] = torch.zeros(16, 1, 3, 3)  # grey-scale stem
    bad["extra.weight"] = torch.zeros(2)
    src = _save(bad, tmp_path / "bad.pth")
    with pytest.raises(W.WeightsError) as info:
        W.import_weights_file(NAME, src)
    err = info.value
    assert isinstance(err, TlsError)
    msg = str(err)
    assert "bad.pth" in msg
    assert "2 missing key(s): classifier.3.weight, classifier.3.bias" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert (
        "1 shape mismatch(es): features.0.0.weight file [16, 1, 3, 3] vs model [16, 3, 3, 3]" in msg
    )
    assert err.missing == ["classifier.3.weight", "classifier.3.bias"]
    assert err.unexpected == ["extra.weight"]
    assert err.mismatched == [("features.0.0.weight", (16, 1, 3, 3), (16, 3, 3, 3))]
    assert not W.weights_status(NAME).cached


def test_wrong_architecture_truncates_long_listings(tmp_path: Path) -> None:
    other = build_architecture("efficientnet_lite0", "meta")
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in other.state_dict().items()}
    with pytest.raises(W.WeightsError, match=r"missing key\(s\): .*\(\+\d+ more\)") as info:
        W.import_weights_file(NAME, _save(state, tmp_path / "lite.pth"))
    assert len(info.value.unexpected) == len(state)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "random-bytes.pth"
    src.write_bytes(os.urandom(4096))
    with pytest.raises(W.WeightsError, match="random-bytes.pth") as info:
        W.import_weights_file(NAME, src)
    assert info.value.path == src
    with pytest.raises(W.WeightsError, match="random-bytes.pth"):
        W.load_state_dict_safely(src)
    with pytest.raises(W.WeightsError, match="random-bytes.pth"):
        build_backbone(NAME, weights=src)
    assert not W.weights_status(NAME).cached


def test_missing_and_non_state_dict_files(tmp_path: Path) -> None:
    with pytest.raises(W.WeightsError, match="nope.pth: file not found"):
        W.load_state_dict_safely(tmp_path / "nope.pth")
    with pytest.raises(W.WeightsError, match="not a state dict"):
        W.load_state_dict_safely(_save([1, 2, 3], tmp_path / "list.pth"))
    with pytest.raises(W.WeightsError, match="not tensors"):
        W.load_state_dict_safely(_save({"a": torch.zeros(1), "b": 2}, tmp_path / "mixed.pth"))


class Payload:
    """A custom class: unpickling it would need code execution, which weights_only refuses."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    src = _save({"weight": torch.zeros(1), "obj": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(W.WeightsError, match=r"evil.pth: refused: .*Payload"):
        W.load_state_dict_safely(src)


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes, send_length: bool = True) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))} if send_length else {}


@pytest.fixture
def served(
    tmp_path: Path, good_state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> dict:
    payload = _save(good_state, tmp_path / "served.pth").read_bytes()
    log: dict = {"urls": [], "payload": payload}

    def fake_urlopen(request: object, timeout: float = 0) -> FakeResponse:
        log["urls"].append(request.full_url)  # type: ignore[attr-defined]
        return FakeResponse(payload)

    monkeypatch.setattr(W, "urlopen", fake_urlopen)
    return log


def test_download_reports_progress_and_lands_in_cache(served: dict, hub: Path) -> None:
    calls: list[tuple[int, int]] = []
    dest = W.download_weights(
        NAME, lambda done, total: calls.append((done, total)), check_hash=False
    )
    size = len(served["payload"])
    assert served["urls"] == [W.weights_url(NAME)]
    assert dest == hub / "checkpoints" / FILE
    assert dest.read_bytes() == served["payload"]
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert len(calls) >= 3  # several 1 MiB chunks
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:], strict=False))
    assert W.weights_status(NAME).cached
    assert not list(dest.parent.glob("*.part"))


def test_download_hash_mismatch_keeps_nothing(served: dict, hub: Path) -> None:
    assert not hashlib.sha256(served["payload"]).hexdigest().startswith("047dcff4")
    with pytest.raises(W.WeightsError, match="does not match 047dcff4"):
        W.download_weights(NAME)
    assert list((hub / "checkpoints").iterdir()) == []


def test_download_cancelled_by_progress_keeps_nothing(served: dict, hub: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        if done > 0:
            raise Cancelled

    with pytest.raises(Cancelled):
        W.download_weights(NAME, cancel, check_hash=False)
    assert list((hub / "checkpoints").iterdir()) == []


def test_download_network_error_is_weights_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(request: object, timeout: float = 0) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(W, "urlopen", offline)
    with pytest.raises(W.WeightsError, match="download from https://.* failed"):
        W.download_weights(NAME)


def test_lite_has_no_download() -> None:
    with pytest.raises(W.WeightsError, match="no download URL"):
        W.download_weights("efficientnet_lite0")
