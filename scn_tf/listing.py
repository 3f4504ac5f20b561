"""Lists in messages: the first few items, and how many were left out."""

from __future__ import annotations

from collections.abc import Iterable


def shortened(items: Iterable[object], limit: int = 10) -> str:
    """The first `limit` items joined by ", ", then ", ... (N more)" where the list was cut."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return f"{shown}, ... ({len(items) - limit} more)" if len(items) > limit else shown
