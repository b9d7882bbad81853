"""The study's ``report:`` section: inputs of the report's derived figures, never guessed.

Grid carbon intensity and electricity price differ by place and hour; llem does not look them up.
Set here (or on ``llem report``'s command line), they turn energy per token into emissions and
cost per million tokens; unset, those figures are absent. They change no measurement, so they
are not part of the design hash.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReportInputs(BaseModel):
    """What the derived figures need from the user (the study's ``report:`` section)."""

    model_config = ConfigDict(extra="forbid")

    carbon_intensity_g_per_kwh: float | None = Field(
        None, gt=0, description="Grid carbon intensity (gCO2e/kWh) for emissions per 1M tokens.")
    electricity_price_per_kwh: float | None = Field(
        None, gt=0, description="Electricity price per kWh for cost per 1M tokens.")
    currency: str = Field("EUR", min_length=1, max_length=8,
                          description="Currency of electricity_price_per_kwh.")

    def merged(self, override: ReportInputs) -> ReportInputs:
        """These inputs with every value ``override`` sets replacing them (command line wins)."""
        return self.model_copy(update=override.model_dump(exclude_unset=True))
