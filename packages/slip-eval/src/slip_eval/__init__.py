"""slip-eval: retrieval and classification benchmarks for SLIP and CLIP checkpoints."""

__version__ = "0.1.0"
