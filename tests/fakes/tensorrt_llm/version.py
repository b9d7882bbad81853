"""``tensorrt_llm/version.py``: the version the package was built as (read by llem without
importing the package)."""

__version__ = "1.0.0"
