"""re_pipeline: document corpora to a queryable knowledge graph."""

__version__ = "0.1.0"
