"""Graph stage: raw files to filtered product nodes and weighted co-purchase edges."""
