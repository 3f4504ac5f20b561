"""Figures without pyplot: no process-wide figure registry and no backend chosen at import time.

A `matplotlib.figure.Figure` made directly renders through the Agg canvas when saved to PNG, whatever
backend the process (a notebook, say) uses.
"""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from scn_tf.files import atomic_path


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int) -> None:
    """Lays the figure out tightly and writes it to `path` (a temporary name first, then renamed)."""
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi)
