"""Every test in tests/ml runs with one intra-op torch thread (``torch_one_thread``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(torch_one_thread: None) -> None:
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine two
    threads spin-wait for each other: the FCOS overfit test took 164 s with two threads
    and 18 s with one, under the same load."""
