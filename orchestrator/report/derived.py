"""Figures derived from energy per token and inputs the user gives, never guessed.

Energy per million output tokens in kWh needs nothing else. Emissions and cost need a grid
carbon intensity (gCO2e/kWh) and an electricity price (per kWh), set in the study's ``report:``
section or on ``llem report``'s command line; without them those figures are absent, and every
derived figure is labelled with the inputs it came from.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.study.report_inputs import ReportInputs

JOULES_PER_KWH = 3.6e6
TOKENS = 1_000_000


class DerivedFigure(BaseModel):
    """One derived figure with what it was computed from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: float
    unit: str
    inputs: str = Field(description="What the figure was computed from, in words.")


def derived_figures(energy_per_token_j: float | None,
                    inputs: ReportInputs) -> list[DerivedFigure]:
    """kWh, gCO2e and cost per 1M output tokens from a mean J/token (empty without energy)."""
    if energy_per_token_j is None:
        return []
    kwh = energy_per_token_j * TOKENS / JOULES_PER_KWH
    figures = [DerivedFigure(name="energy_per_1m_tokens", value=kwh, unit="kWh/1M tokens",
                             inputs="J/token x 1e6 / 3.6e6")]
    if inputs.carbon_intensity_g_per_kwh is not None:
        figures.append(DerivedFigure(
            name="emissions_per_1m_tokens", value=kwh * inputs.carbon_intensity_g_per_kwh,
            unit="gCO2e/1M tokens",
            inputs=f"kWh/1M tokens x {inputs.carbon_intensity_g_per_kwh:g} gCO2e/kWh"))
    if inputs.electricity_price_per_kwh is not None:
        figures.append(DerivedFigure(
            name="cost_per_1m_tokens", value=kwh * inputs.electricity_price_per_kwh,
            unit=f"{inputs.currency}/1M tokens",
            inputs=f"kWh/1M tokens x {inputs.electricity_price_per_kwh:g} "
                   f"{inputs.currency}/kWh"))
    return figures
