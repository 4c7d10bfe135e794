"""UCUM units of the common vital signs and labs, reduced to one canonical unit each.

Quantities are compared in canonical units so that `value-quantity=gt80|http://unitsofmeasure.org|kg`
finds an 80,500 g weight. Factors are exact UCUM definitions; temperature is an affine
conversion. Units not listed compare only with themselves.
"""

from __future__ import annotations

UCUM = "http://unitsofmeasure.org"

# unit -> (canonical unit, multiply by, then add)
_CANONICAL: dict[str, tuple[str, float, float]] = {
    # mass
    "kg": ("g", 1000.0, 0.0),
    "g": ("g", 1.0, 0.0),
    "mg": ("g", 0.001, 0.0),
    "ug": ("g", 1e-6, 0.0),
    "[lb_av]": ("g", 453.59237, 0.0),
    "[oz_av]": ("g", 28.349523125, 0.0),
    # length
    "m": ("m", 1.0, 0.0),
    "cm": ("m", 0.01, 0.0),
    "mm": ("m", 0.001, 0.0),
    "[in_i]": ("m", 0.0254, 0.0),
    "[ft_i]": ("m", 0.3048, 0.0),
    # temperature
    "Cel": ("K", 1.0, 273.15),
    "K": ("K", 1.0, 0.0),
    "[degF]": ("K", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    # pressure
    "mm[Hg]": ("Pa", 133.322387415, 0.0),
    "kPa": ("Pa", 1000.0, 0.0),
    "Pa": ("Pa", 1.0, 0.0),
    # rates
    "/min": ("/s", 1.0 / 60.0, 0.0),
    "{beats}/min": ("/s", 1.0 / 60.0, 0.0),
    "{breaths}/min": ("/s", 1.0 / 60.0, 0.0),
    "/s": ("/s", 1.0, 0.0),
    "L/min": ("m3/s", 1e-3 / 60.0, 0.0),
    # fractions
    "%": ("1", 0.01, 0.0),
    "1": ("1", 1.0, 0.0),
    # concentrations
    "mmol/L": ("mol/m3", 1.0, 0.0),
    "mol/L": ("mol/m3", 1000.0, 0.0),
    "mmol/mol": ("1", 0.001, 0.0),
    "g/L": ("kg/m3", 1.0, 0.0),
    "g/dL": ("kg/m3", 10.0, 0.0),
    "mg/dL": ("kg/m3", 0.01, 0.0),
    # body mass index
    "kg/m2": ("g/m2", 1000.0, 0.0),
}


def canonical_quantity(
    value: float, system: str | None, code: str | None
) -> tuple[float, str] | None:
    """Return (value, canonical unit) for a UCUM quantity we know, else None."""
    if system != UCUM or code is None:
        return None
    known = _CANONICAL.get(code)
    if known is None:
        return None
    unit, factor, offset = known
    return value * factor + offset, unit
