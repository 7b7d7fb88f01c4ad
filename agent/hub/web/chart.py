"""A small bar chart as server-drawn SVG: no JavaScript, readable without colour (a title per bar)."""

from __future__ import annotations

from html import escape


def activity_svg(days: list[dict[str, object]], *, width: int = 240, height: int = 40) -> str:
    """One bar per day (oldest left); each bar's title says the day and the count."""
    counts = [int(str(d["files"])) for d in days]
    peak = max(counts, default=0) or 1
    step = width / max(len(days), 1)
    bars = []
    for i, (day, count) in enumerate(zip(days, counts, strict=True)):
        h = 0 if count == 0 else max(1.0, height * count / peak)
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(str(day['day']))}: {count} file(s)</title></rect>"
        )
    total = sum(counts)
    return (
        f'<svg class="activity" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{total} file(s) in the last {len(days)} days">{"".join(bars)}</svg>'
    )
