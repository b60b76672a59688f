"""Shard stage: the Parquet shards and manifest that slip-train and slip-eval read."""
