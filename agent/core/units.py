"""Units as labs write them: their UCUM codes, and conversions between them (through pint).

Headers write units many ways (``°C``, ``degC``, ``[nm]``, ``counts``, ``%T``, ``µm``, ``cm-1``).
``parse_unit`` reads one into a ``Unit``: the text as written, its UCUM code (the machine-readable
code schema.org's ``unitCode`` wants; None where UCUM has none) and the expression pint converts
with (None for labels such as ``AU`` or ``RFU``, which name a scale, not a unit). ``conversion``
gives the affine map from one unit to another, or a UnitError that says why there is none.

pint is imported on first use only: a command that meets no unit does not pay its 0.3 s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class UnitError(ValueError):
    """A unit that is not known, or a conversion that cannot be made; the message says which."""


@dataclass(frozen=True, slots=True)
class Unit:
    text: str
    #: The UCUM code (https://ucum.org), or None where UCUM has none (``Torr``).
    ucum: str | None
    #: The expression pint reads; None for a label that only converts to itself (``AU``).
    pint: str | None


#: Spellings pint does not read, or reads otherwise than labs mean them: (pint expression, UCUM).
_LAB_SPELLINGS: dict[str, tuple[str | None, str | None]] = {
    "°C": ("degC", "Cel"),
    "degC": ("degC", "Cel"),
    "deg C": ("degC", "Cel"),
    "℃": ("degC", "Cel"),
    "°F": ("degF", "[degF]"),
    "degF": ("degF", "[degF]"),
    "°": ("degree", "deg"),
    "deg": ("degree", "deg"),
    "counts": ("count", "{counts}"),
    "count": ("count", "{counts}"),
    "cts": ("count", "{counts}"),
    "cps": ("count / second", "{counts}/s"),
    "%": ("percent", "%"),
    "%T": ("percent", "%{transmittance}"),
    "%R": ("percent", "%{reflectance}"),
    "‰": ("permille", "[ppth]"),
    "ppm": ("ppm", "[ppm]"),
    "ppb": ("ppb", "[ppb]"),
    "rpm": ("rpm", "{rev}/min"),
    "AU": (None, "{AU}"),
    "au": (None, "{AU}"),
    "Abs": (None, "{AU}"),
    "abs": (None, "{AU}"),
    "OD": (None, "{OD}"),
    "a.u.": (None, "[arb'U]"),
    "arb.u.": (None, "[arb'U]"),
    "RFU": (None, "{RFU}"),
    "RLU": (None, "{RLU}"),
    "dB": (None, "dB"),
    "px": ("pixel", "{pixel}"),
    "pixel": ("pixel", "{pixel}"),
    "pixels": ("pixel", "{pixel}"),
    "scans": (None, "{scans}"),
    "Torr": ("torr", None),
    "torr": ("torr", None),
    "mmHg": ("mmHg", "mm[Hg]"),
    "psi": ("psi", "[psi]"),
    "Ohm": ("ohm", "Ohm"),
    "ohm": ("ohm", "Ohm"),
    "Ω": ("ohm", "Ohm"),
    "l": ("liter", "L"),
    "L": ("liter", "L"),
    "Cel": ("degC", "Cel"),
}
#: Texts that look like units in headers but are formats of durations, not units.
_NOT_UNITS = frozenset({"h:m:s", "hh:mm:ss", "mm:ss"})

#: pint's symbols that UCUM writes otherwise.
_UCUM_SYMBOLS = {
    "°C": "Cel",
    "degC": "Cel",
    "°F": "[degF]",
    "degF": "[degF]",
    "Ω": "Ohm",
    "l": "L",
    "count": "{counts}",
    "ppm": "[ppm]",
    "ppb": "[ppb]",
    "‰": "[ppth]",
    "psi": "[psi]",
    "mmHg": "mm[Hg]",
    "Da": "u",
    "rpm": "{rev}/min",
    "pixel": "{pixel}",
    "Ah": "A.h",
    "Wh": "W.h",
}
_UCUM_PREFIXES = "da|[YZEPTGMkhdcmunpfa]"
#: UCUM atoms that take prefixes, written as UCUM writes them (a subset: what instruments record).
_UCUM_METRIC = (
    "m|g|s|A|K|mol|cd|Hz|N|Pa|J|W|C|V|F|Ohm|S|T|H|Wb|L|eV|bar|Cel|rad|sr|u|lm|lx|Bq|Gy|Sv|kat|eq|osm"
)
_UCUM_ATOM = re.compile(
    rf"(?:(?:{_UCUM_PREFIXES})?(?:{_UCUM_METRIC})|min|h|d|wk|mo|a|deg|%|atm|\[[^\]]+\]|\{{[^}}]+\}}|"
    rf"(?:{_UCUM_PREFIXES})?\[[^\]]+\]|mm\[Hg\]|\{{rev\}}/min)"
)
#: A unit that is one UCUM atom, perhaps prefixed, written as pint writes it too: known without pint
#: (which takes 0.3 s to import, on the first file of every process).
_SIMPLE = re.compile(
    rf"(?:{_UCUM_PREFIXES})?(?:m|g|s|A|K|mol|cd|Hz|N|Pa|J|W|C|V|F|S|T|H|Wb|L|eV|bar|rad|sr|lm|lx|Bq|Gy|Sv)"
    r"|min|h|d|deg|atm"
)
_SUPERSCRIPTS = str.maketrans("⁻¹²³⁴⁵⁶⁷⁸⁹⁰", "-1234567890")
_POWER = re.compile(r"(?<=[A-Za-zµμΩ°])\^?(-?\d+)(?![\d.])")


@lru_cache(maxsize=1)
def _registry() -> Any:
    import pint  # imported here: only units that are converted or coded pay for it

    return pint.UnitRegistry(autoconvert_offset_to_baseunit=False, on_redefinition="ignore")


@lru_cache(maxsize=1024)  # a few dozen spellings repeat across every file of a lab
def parse_unit(text: str) -> Unit:
    """A unit as a header writes it. Raises UnitError for text that is not a unit pint knows."""
    written = text.strip()
    bare = written[1:-1].strip() if written[:1] in "[(" and written[-1:] in "])" else written
    if not bare or bare in _NOT_UNITS:
        raise UnitError(f"{text!r} is not a unit")
    if bare in _LAB_SPELLINGS:
        expression, ucum = _LAB_SPELLINGS[bare]
        return Unit(written, ucum, expression)
    if _SIMPLE.fullmatch(bare):  # "s", "nm", "mV", "min": UCUM as written, and pint reads it alike
        return Unit(written, bare, bare)
    expression = _pint_expression(bare)
    try:
        parsed = _registry().parse_units(expression)
    except Exception as exc:  # pint raises several kinds (UndefinedUnitError, DefinitionSyntaxError...)
        raise UnitError(f"{text!r} is not a unit pint knows ({type(exc).__name__})") from None
    return Unit(written, _ucum(parsed), expression)


def ucum_code(text: str) -> str | None:
    """The UCUM code of a unit as written; None for what is not a unit or has no code."""
    try:
        return parse_unit(text).ucum
    except UnitError:
        return None


def conversion(source: str, target: str) -> tuple[float, float]:
    """``(scale, offset)`` such that a value in ``source`` is ``value * scale + offset`` in
    ``target``: every unit a lab converts is linear or affine (°C to K). Raises UnitError."""
    found, wanted = parse_unit(source), parse_unit(target)
    if found.pint is None or wanted.pint is None:
        if (found.ucum or found.text) == (wanted.ucum or wanted.text):
            return 1.0, 0.0
        label = found if found.pint is None else wanted
        raise UnitError(
            f"cannot convert from {source!r} to {target!r}: {label.text!r} names a scale, not a unit "
            "with a definition, so it converts only to itself"
        )
    registry = _registry()
    try:
        zero = registry.Quantity(0.0, found.pint).to(wanted.pint).magnitude
        one = registry.Quantity(1.0, found.pint).to(wanted.pint).magnitude
    except Exception as exc:  # DimensionalityError, OffsetUnitCalculusError
        dimensions = _dimensions(found.pint), _dimensions(wanted.pint)
        why = f"{dimensions[0]} is not {dimensions[1]}" if dimensions[0] != dimensions[1] else str(exc)
        raise UnitError(f"cannot convert from {source!r} to {target!r}: {why}") from None
    return _snapped(one - zero), _snapped(zero)


def _snapped(factor: float) -> float:
    """A factor without the noise pint's arithmetic leaves (µM to nM: 999.9999999999999; °C to °F:
    1.7999999999999972): the nearest number of 12 significant digits where that is within 1e-12
    of it. 1/60 (s to min) is not near one, and stays as it is."""
    short = float(f"{factor:.12g}")
    return short if abs(short - factor) <= 1e-12 * abs(factor) else factor


def _dimensions(expression: str) -> str:
    try:
        dimensionality = _registry().parse_units(expression).dimensionality
    except Exception:
        return "unknown"
    return str(dimensionality) if dimensionality else "dimensionless"


def _pint_expression(text: str) -> str:
    """``cm-1``, ``m²``, ``mA.h``, ``µm``: the same in words pint reads."""
    text = text.translate(_SUPERSCRIPTS).replace("μ", "µ")
    text = _POWER.sub(r"**\1", text)
    return re.sub(r"(?<=[A-Za-zµΩ\d])[.·](?=[A-Za-zµΩ])", "*", text)


def _ucum(parsed: Any) -> str | None:
    registry = _registry()
    above: list[str] = []
    below: list[str] = []
    for name, exponent in sorted(parsed._units.items(), key=lambda item: item[1] < 0):
        prefix, base, _ = registry.parse_unit_name(name)[0]
        head = registry._prefixes[prefix].symbol.replace("µ", "u") if prefix else ""
        symbol = registry.get_symbol(base).removeprefix("Δ")  # a difference: the scale's code
        if symbol == "M":  # molar: UCUM writes mol/L, the prefix on the mol
            if abs(exponent) != 1:
                return None
            (above if exponent > 0 else below).append(f"{head}mol")
            (below if exponent > 0 else above).append("L")
            continue
        symbol = head + _UCUM_SYMBOLS.get(symbol, symbol)
        if not all(_UCUM_ATOM.fullmatch(atom) for atom in symbol.split(".")):
            return None
        power = abs(exponent)
        (above if exponent > 0 else below).append(symbol if power == 1 else f"{symbol}{power:g}")
    if not above and not below:
        return "1"
    code = ".".join(above)
    return code + "".join(f"/{part}" for part in below) if code else "/" + "/".join(below)
