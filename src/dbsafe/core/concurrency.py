"""How many threads parallel work uses by default."""

import os


def default_workers() -> int:
    """One thread per core: the hot paths are CPU-bound in C code that releases the GIL."""
    return os.cpu_count() or 2
