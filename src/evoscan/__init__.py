"""evoscan: find genomic windows a language model calls alike that no alignment can see."""

__version__ = "0.1.0"
