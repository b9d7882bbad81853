"""The harness version; the image labels and every result carry it."""

__version__ = "0.1.0"
