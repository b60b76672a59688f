"""Data sources other than the public Amazon Reviews 2023 host."""
