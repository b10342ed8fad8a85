"""Keeping the garbage collector's full collections short.

A full (generation 2) collection walks every tracked object. In a web or worker process most of
them are what startup made (modules, classes, settings, pools: ~100k objects), which never
become garbage; walking them took 25-45 ms in `dev` during the preview benchmark, long enough to
be the 99th percentile of an edit's way to the preview. Freezing the heap once startup is done
moves those objects to the permanent generation, so later full collections only walk what was
allocated since (docs/benchmarks.md, "Edit latency tail").
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Call once startup is done: what is alive now is kept out of every later collection."""
    gc.collect()  # what startup left as garbage goes now, not frozen for the process's life
    gc.freeze()
