"""Read back what report.html draws: each plot div's traces and layout, and trace sizes."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np


def _plots(page: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Each plot div's (traces, layout), decoded from its Plotly.newPlot call."""
    found = {}
    decoder = json.JSONDecoder()
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', page):
        data, end = decoder.raw_decode(page, match.end())
        layout_start = re.compile(r"\s*,\s*").match(page, end)
        assert layout_start is not None, f"{match.group(1)}: no layout after its traces"
        layout, _ = decoder.raw_decode(page, layout_start.end())
        found[match.group(1)] = (data, layout)
    return found


def figures(page: str) -> dict[str, list[dict[str, Any]]]:
    """Each plot div's traces, decoded from its Plotly.newPlot call."""
    return {name: data for name, (data, _) in _plots(page).items()}


def layouts(page: str) -> dict[str, dict[str, Any]]:
    """Each plot div's layout (axes, annotations), decoded from its Plotly.newPlot call."""
    return {name: layout for name, (_, layout) in _plots(page).items()}


def points(values: Any) -> int:
    """How many values a trace array holds (plain list or Plotly's base64 typed array)."""
    if values is None:
        return 0
    if isinstance(values, dict):
        size = int(re.sub(r"\D", "", values["dtype"]) or 8)
        return len(base64.b64decode(values["bdata"])) // size
    return len(values)


def values(array: Any) -> list[float]:
    """A trace array's values (plain list or Plotly's base64 typed array)."""
    if isinstance(array, dict):
        return [float(v) for v in np.frombuffer(base64.b64decode(array["bdata"]),
                                                dtype=np.dtype(array["dtype"]))]
    return [float(v) for v in array]
