"""Handing freed memory back to the operating system (glibc keeps it otherwise)."""

from __future__ import annotations


def release_memory() -> None:
    """Hand freed heap back to the operating system between chunks and stages.

    Without it glibc keeps the fragmented arenas of every chunk scored so far (measured: 1M leads with
    reasons peaked at 1.52 GiB in the scoring loop against 1.23 GiB for 100k; with it 1.31 GiB), so peak
    memory would creep up with the number of leads. A no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
