"""What each backend accepts, as the schema reads it: the vocabulary and a view of the catalog.

Each backend's rules are declared with the backend in :mod:`harness.backends.catalog`; the
study loader, the dry run and the docs read them through ``RULES`` here, and nothing else
hard-codes which precision or decoding mode a backend supports.
"""

from __future__ import annotations

from harness.backends.catalog import BACKEND_NAMES, CATALOG, BackendRules

PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")
DECODERS = ("greedy", "sampling", "beam")
BACKENDS = BACKEND_NAMES

RULES: dict[str, BackendRules] = {entry.name: entry.rules for entry in CATALOG}
"""Backend name -> what it accepts (declared in :mod:`harness.backends.catalog`)."""

# Precisions that are a quantisation scheme rather than a float compute dtype: they may not be
# combined with a weight-quantisation setting in the backend section.
QUANTISED_PRECISIONS = frozenset({"fp8", "int8", "int4"})
# bitsandbytes and most weight-only schemes compute in half precision.
HALF_PRECISIONS = frozenset({"fp16", "bf16"})


def allowed(values: frozenset[str] | tuple[str, ...]) -> str:
    """Render a set of allowed values in a stable, readable order."""
    order = {name: i for i, name in enumerate(PRECISIONS + DECODERS + BACKENDS)}
    return ", ".join(sorted(values, key=lambda v: (order.get(v, 99), v)))
