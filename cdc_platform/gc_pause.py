"""Pausing Python's cyclic garbage collector around bulk object work.

Decoding a segment range and converting change batches create hundreds of thousands of small
objects (changes, cells, dicts, tuples) that stay alive until the batch is done. Every burst
of allocations triggers the cyclic collector, which then rescans all those live objects (the
``records`` and ``arrow`` stages of ``benchmarks/bench_decode.py`` show the gain). The
objects hold no reference cycles, so reference counting frees them; the collector is paused
while a batch is built and resumed when the outermost pause ends (pauses nest and may come
from several threads).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disables the cyclic collector for the block (if it was enabled when the first pause began)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
