"""M2SNet teaching and reproduction library."""
__version__ = "0.1.0"
