"""Filling the gaps of a derived table's columns, chunk by chunk, as if the table were read whole.

``interpolate`` fills a gap linearly in the row number between the values measured before and
after it: the rows of a gap still open at the end of a chunk are held back until a later chunk
brings the value after it (never extrapolated: a gap before the first or after the last value
stays empty). A gap longer than the rows that may be held is left empty, whole, and counted.
``ffill`` repeats the last value measured before the gap; a constant fills it. Every value filled
is marked True in the column's mask, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Values (rows x columns) held back while a gap waits for the value after it.
MAX_HELD_CELLS = 4_000_000


@dataclass(slots=True)
class GapState:
    """One column's gap handling across chunks."""

    name: str
    #: "interpolate", "ffill", or "constant" (with ``value``).
    method: str
    mask: str
    value: Any = None
    #: The last value measured in the rows already written, and its row number.
    last_row: int | None = None
    last_value: Any = None
    #: In a gap given up on (too long to hold): left empty until the next value measured.
    abandoned: bool = False
    imputed: int = 0
    left_empty: int = 0


def fill_gaps(frame: Any, states: list[GapState], *, final: bool) -> tuple[Any, Any]:
    """The rows whose gaps are settled (filled in place), and the rows held back (None: none)."""
    if not len(frame):
        return frame, None
    cut = len(frame)
    for state in states:
        if state.method == "interpolate":
            cut = min(cut, _interpolate(frame, state, final=final))
        elif state.method == "ffill":
            _forward_fill(frame, state)
        else:
            _constant(frame, state)
    if cut < len(frame) and (len(frame) - cut) * len(frame.columns) > MAX_HELD_CELLS:
        for state in states:  # too long to hold: these gaps stay empty, whole
            if state.method == "interpolate":
                still_empty = int(frame[state.name].iloc[cut:].isna().sum())
                if still_empty:
                    state.left_empty += still_empty
                    state.abandoned, state.last_row = True, None
        cut = len(frame)
    ready, held = frame.iloc[:cut], frame.iloc[cut:].copy()
    for state in states:
        if state.method != "constant" and not state.abandoned:
            known = ready[state.name].dropna()
            if len(known):
                state.last_row, state.last_value = int(known.index[-1]), known.iloc[-1]
    return ready, (held if len(held) else None)


def _interpolate(frame: Any, state: GapState, *, final: bool) -> int:
    """Fill the gaps between known values; the position of the first row of a gap still open at
    the end of the frame (len(frame) when none is)."""
    import numpy as np

    values = frame[state.name].to_numpy(dtype="float64", na_value=np.nan, copy=True)
    rows = frame.index.to_numpy()
    known = ~np.isnan(values)
    if state.abandoned:  # the rest of a gap given up on stays empty up to the next value
        first = int(np.argmax(known)) if known.any() else len(values)
        state.left_empty += first
        if first == len(values):
            return len(frame)
        state.abandoned = False
    xs, ys = rows[known], values[known]
    if state.last_row is not None and state.last_row < rows[0]:
        xs, ys = np.concatenate(([state.last_row], xs)), np.concatenate(([state.last_value], ys))
    if not len(xs):
        return len(frame)
    inside = ~known & (rows > xs[0]) & (rows < xs[-1])
    if inside.any():
        values[inside] = np.interp(rows[inside], xs, ys)
        frame[state.name] = values
        frame.loc[inside, state.mask] = True
        state.imputed += int(inside.sum())
    still_open = ~known & (rows > xs[-1])
    if final or not still_open.any():
        return len(frame)
    return int(np.argmax(still_open))


def _forward_fill(frame: Any, state: GapState) -> None:
    values = frame[state.name]
    gaps = values.isna()
    if not gaps.any():
        return
    filled = values.ffill()
    if state.last_row is not None:
        filled = filled.fillna(state.last_value)
    imputed = gaps & filled.notna()
    frame[state.name] = filled
    frame.loc[imputed, state.mask] = True
    state.imputed += int(imputed.sum())


def _constant(frame: Any, state: GapState) -> None:
    gaps = frame[state.name].isna()
    if gaps.any():
        frame.loc[gaps, state.name] = state.value
        frame.loc[gaps, state.mask] = True
        state.imputed += int(gaps.sum())
