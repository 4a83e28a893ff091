"""The process's thread budget applied to torch: the one place tlstudio calls
``torch.set_num_threads`` and ``torch.set_num_interop_threads``.

The policy (how many threads, the defaults, the user's setting) lives in
:mod:`tlstudio.runtime.threads`; this module only hands it to torch. torch keeps the
OpenMP thread count per calling thread, so every thread that runs torch work (the CLI's
main thread, the window's training and prediction threads) calls :func:`apply` before it
starts; all of them apply the same budget, so nothing is set back afterwards and no job
changes another's threads.
"""

from __future__ import annotations

import threading

import torch

from tlstudio.runtime.threads import ThreadBudget, configured, plan

_interop_lock = threading.Lock()
_interop_set = False


def apply(budget: ThreadBudget | None = None) -> int:
    """Give torch ``budget``'s threads (None: the process's configured budget; when no
    entry point configured one, torch is left alone) in the calling thread. Returns
    torch's intra-op threads afterwards."""
    budget = budget if budget is not None else configured()
    if budget is None:
        return torch.get_num_threads()
    torch.set_num_threads(budget.threads)
    _set_interop_once(budget.interop)
    return torch.get_num_threads()


def apply_for_window(threads: int | None = None) -> int:
    """:func:`apply` in a window's worker thread: ``threads`` if given (tests, benches),
    else the window's configured budget, else its default (one core left for the GUI)."""
    if threads:
        budget = plan(threads, gui=True)
    else:
        budget = configured() or plan(None, gui=True)
    return apply(budget)


def _set_interop_once(n: int) -> None:
    """torch's inter-op pool can be sized only once, before any inter-op work; later
    calls (and a pool already started) leave it as it is."""
    global _interop_set
    with _interop_lock:
        if _interop_set:
            return
        _interop_set = True
        if torch.get_num_interop_threads() == n:
            return
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # the pool already started: keep torch's
            pass
