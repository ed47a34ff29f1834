"""pysup: a pure-Python, Habitat-style Supervisor."""

__version__ = "0.1.0"
