"""Console commands (scn-augment, ...)."""
