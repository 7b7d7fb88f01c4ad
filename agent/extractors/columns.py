"""A table's variables: their names and units as the header writes them, and their profiles.

Units come from ``Time [s]``, ``Absorbance (AU)``, ``Voltage / V`` and ``Ewe/V`` alike, or from a
line of units under the header; a unit must look like one (``A/B ratio`` and ``m/z`` are names).
A plate reader's variables are well ids (A1..P24), time, temperature and cycle, named so whichever
way the table lies (a variable per line is profiled from its line, ``line_values``). A column
named like a date whose numbers are Excel serial days gets them as ISO dates too, the numbers kept.

Invariants: a column keeps the header's text as ``label`` when its name differs; no two columns of
one table get the same name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from .vendorheader import excel_date, is_date_name

_BRACKETED = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<square>[^\[\]]{1,24})\]|\((?P<round>[^()]{1,24})\))\s*$")
_PREFIX = re.compile("da|[YZEPTGMkhdcmµμunpfa]")
#: Units a name may end in, alone or with an SI prefix, a power ("cm-1", "m²") or combined
#: ("mA.h", "mol/L").
_UNITS = (
    "m g s A K mol cd Hz N Pa J W C V F Ω ohm Ohm S T H Wb L l M eV Da bar atm Torr torr mmHg psi "
    "h min d rpm rad sr deg ° °C °F % ‰ ppm ppb AU au OD counts count cts cps RFU RLU dB px pixel "
    "pixels scans Abs abs Ah Wh VA eq"
)
_BASE = frozenset(_UNITS.split())
_WHOLE_UNITS = frozenset({"a.u.", "arb.u.", "h:m:s", "hh:mm:ss", "mm:ss", "°", "%T", "%R"})
#: Names with a slash that are not a quantity over its unit.
_NOT_SPLIT = frozenset({"s/n", "a/b", "i/o", "w/w", "v/v", "w/v", "m/z", "on/off", "ox/red"})
_EXPONENT = re.compile(r"(\^?[-+]?\d+|[⁻¹²³⁴]+)$")
_WELL = re.compile(r"^[A-P](0?[1-9]|1\d|2[0-4])$")
#: What plate readers abbreviate, written out (only in plate tables: elsewhere "Temp." may be
#: anything).
_PLATE_NAMES = {"cycle nr.": "Cycle", "cycle no.": "Cycle", "cycle #": "Cycle", "temp.": "Temperature"}
#: The fewest well ids that make a table a plate's.
MIN_WELLS = 3


def looks_like_unit(text: str, *, square: bool = False) -> bool:
    """Whether ``text`` reads as a unit: short, no spaces, made of known units (``mA.h``,
    ``1/cm``, ``µm``, ``°C``). In square brackets anything short and unit-ish counts."""
    text = text.strip()
    if not text or len(text) > 16 or " " in text:
        return False
    if text in _WHOLE_UNITS:
        return True
    if square:
        return bool(re.search(r"[A-Za-z°%µΩ]", text))
    tokens = re.split(r"[/.·*]", text.rstrip("."))
    return all(_unit_token(token, first=i == 0 and len(tokens) > 1) for i, token in enumerate(tokens))


def _unit_token(token: str, *, first: bool) -> bool:
    if first and token == "1":  # "1/cm"
        return True
    base = _EXPONENT.sub("", token)
    if base in _BASE:
        return True
    prefix = _PREFIX.match(base)
    return prefix is not None and base[prefix.end() :] in _BASE


@lru_cache(maxsize=4096)  # labels repeat from file to file ("Time [s]")
def split_unit(label: str) -> tuple[str, str | None]:
    """``Time [s]`` -> ("Time", "s"); ``Ewe/V`` -> ("Ewe", "V"); ``A/B ratio`` stays a name."""
    text = label.strip()
    m = _BRACKETED.match(text)
    if m and m["name"]:
        unit = m["square"] if m["square"] is not None else m["round"]
        if looks_like_unit(unit, square=m["square"] is not None):
            return m["name"], unit.strip()
    if text.lower() in _NOT_SPLIT:
        return text, None
    # The longest unit after a slash: "control/V/mA" is control in V/mA, "Q charge/discharge/mA.h"
    # is Q charge/discharge in mA.h.
    for at in (i for i, c in enumerate(text) if c == "/"):
        name, unit = text[:at].rstrip(), text[at + 1 :].strip()
        if name and looks_like_unit(unit):
            return name, unit
    return text, None


@lru_cache(maxsize=4096)
def is_well(name: str) -> bool:
    return bool(_WELL.match(name.strip()))


_ORDER = {"empty": 0, "integer": 1, "number": 2, "boolean": 3, "datetime": 4, "text": 5}


class Profiles:
    """Each variable's type, non-null count, range and unit, merged chunk by chunk."""

    def __init__(self) -> None:
        self._by_label: dict[str, dict[str, Any]] = {}

    def merge(self, label: str, series: Any, unit: str | None) -> None:
        """Fold one chunk of a variable's values (a pandas Series) into its profile."""
        import pandas as pd

        non_null = series.dropna()
        if non_null.empty:
            self.fold(label, unit, "empty", 0)
            return
        if pd.api.types.is_bool_dtype(non_null):
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(non_null):
            kind = "integer"
        elif pd.api.types.is_float_dtype(non_null):
            kind = "number"
        else:
            kind = "text"
        numeric = kind in ("integer", "number")
        low, high = (non_null.min(), non_null.max()) if numeric else (None, None)
        self.fold(label, unit, kind, int(non_null.size), low, high)

    def fold(
        self, label: str, unit: str | None, kind: str, count: int, low: Any = None, high: Any = None
    ) -> None:
        """Fold one chunk of a variable, already typed: ``kind`` as ``merge`` names it, ``count``
        values that are not missing, ``low`` and ``high`` for numbers."""
        profile = self._by_label.setdefault(
            label, {"type": "empty", "nonNull": 0, "min": None, "max": None, "unit": unit}
        )
        profile["nonNull"] += count
        if count == 0:
            return
        if _ORDER[kind] > _ORDER[profile["type"]]:
            if profile["type"] in ("integer", "number") and kind == "text":
                profile["min"] = profile["max"] = None
            profile["type"] = kind
        if profile["type"] in ("integer", "number") and kind in ("integer", "number"):
            profile["min"] = low if profile["min"] is None else min(profile["min"], low)
            profile["max"] = high if profile["max"] is None else max(profile["max"], high)

    def finish(self) -> list[dict[str, Any]]:
        """The profiles, in the table's order, named: padding columns with no name and no value
        (",,,,") are not part of the table."""
        kept = {
            label: p
            for label, p in self._by_label.items()
            if not (label.startswith("Unnamed:") and p["nonNull"] == 0)
        }
        plate = sum(is_well(label) for label in kept) >= MIN_WELLS
        used: set[str] = set()
        return [_finish(label, p, plate, used) for label, p in kept.items()]


def _finish(label: str, profile: dict[str, Any], plate: bool, used: set[str]) -> dict[str, Any]:
    name, unit = split_unit(label)
    name = name.lstrip("#").strip() or label
    if plate:
        name = _PLATE_NAMES.get(name.lower(), name)
    if name in used:  # "Time [s]" and "Time [min]" both read as "Time": keep them apart
        name = label
    used.add(name)
    unit = unit or profile["unit"]
    out: dict[str, Any] = {"name": name}
    if name != label:
        out["label"] = label
    if unit:
        out["unit"] = unit
    out.update(type=profile["type"], nonNull=profile["nonNull"])
    for key in ("min", "max"):
        if profile[key] is not None:
            value = profile[key]
            out[key] = int(value) if profile["type"] == "integer" else float(value)
    if "min" in out and is_date_name(name) and not unit:
        low, high = excel_date(out["min"]), excel_date(out["max"])
        if low is not None and high is not None:
            out["excelDate"] = {"min": low, "max": high}
    return out


def line_values(chunk: Any, before: int, decimal: str) -> Iterator[tuple[str, Any]]:
    """Each line of a chunk as (name, values): numbers where every value is one (integers where
    every one is whole), else its values as text."""
    import numpy as np
    import pandas as pd

    numbers, text = _numbers(chunk, decimal)
    for i, name in enumerate(chunk.index):
        label = str(name).strip() if isinstance(name, str) and name.strip() else f"row {before + i + 1}"
        if text[i].any():  # "OVER", "n/a": a text variable, as a column with text would be
            line = chunk.iloc[i]
            yield label, line[line.notna()].astype(str)
            continue
        values = numbers[i][~np.isnan(numbers[i])]
        if values.size and np.all(values == np.floor(values)) and np.all(np.abs(values) < 2**53):
            yield label, pd.Series(values.astype(np.int64))
        else:
            yield label, pd.Series(values)


def _numbers(chunk: Any, decimal: str) -> tuple[Any, Any]:
    """The chunk's cells as floats (NaN where empty or text), and where they hold text.

    pandas made every column it could of numbers; a column with text in some line is coerced,
    column by column, so a wide table of numbers costs no Python loop over its cells."""
    import numpy as np
    import pandas as pd

    mixed = [j for j, kind in enumerate(chunk.dtypes) if not pd.api.types.is_numeric_dtype(kind)]
    if not mixed:
        numbers = chunk.to_numpy(dtype=float)
        return numbers, np.zeros(numbers.shape, dtype=bool)
    numeric = chunk.copy()
    text = np.zeros(chunk.shape, dtype=bool)
    for j in mixed:
        column = chunk.iloc[:, j]
        written = column.astype(str).str.replace(",", ".") if decimal == "," else column.astype(str)
        numeric.isetitem(j, pd.to_numeric(written.where(column.notna()), errors="coerce"))
        text[:, j] = column.notna().to_numpy() & numeric.iloc[:, j].isna().to_numpy()
    return numeric.to_numpy(dtype=float), text


def plate_summary(columns: list[dict[str, Any]]) -> dict[str, int] | None:
    """How many wells a plate table has, and how many hold values; None for other tables."""
    wells = [c for c in columns if is_well(c["name"])]
    if len(wells) < MIN_WELLS:
        return None
    return {"count": len(wells), "withData": sum(1 for c in wells if c["nonNull"] > 0)}
