"""slip-data: Amazon Reviews 2023 (or the embedded demo) to co-purchase graph shards."""

__version__ = "0.1.0"
