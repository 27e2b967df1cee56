"""Ages as people read them ("26 h", "3.5 d"): one wording for the dashboard and `pwh status`."""

from __future__ import annotations


def human_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}" if seconds / size >= 10 or unit == "min" else f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
