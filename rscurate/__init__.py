"""rscurate: build deduplicated, audited remote-sensing training corpora."""

from __future__ import annotations

from typing import Any

__all__ = ["Corpus", "open_corpus"]


def __getattr__(name: str) -> Any:
    """`Corpus` and `open_corpus` load on first use: importing the package (numpy, pyarrow, rasterio: ~0.5 s) would
    otherwise delay the `rscurate` command before it can start its worker server (rscurate/launch.py)."""
    if name in __all__:
        from rscurate import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module 'rscurate' has no attribute {name!r}")
