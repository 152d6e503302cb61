"""rscurate: build deduplicated, audited remote-sensing training corpora."""

from rscurate.corpus import Corpus, open_corpus

__all__ = ["Corpus", "open_corpus"]
