"""Fetch stage: the raw meta and review files of each category, downloaded or found locally."""
