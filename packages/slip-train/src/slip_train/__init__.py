"""slip-train: structure-aware CLIP training on slip-data shards."""

__version__ = "0.1.0"
