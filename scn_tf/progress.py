"""Progress of a loop: Keras' redrawn bar on a terminal, plain occasional lines where stdout is a file or a
pipe (Keras' bar writes colour codes and carriage returns into logs whatever stdout is)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

PLAIN_INTERVAL_SECONDS = 30.0


class PlainProgress:
    """`update`/`add` as keras.utils.Progbar's, writing a line like `120/1500 steps, 41 s, 0.34 s/step - loss:
    2.1` at most every `interval` seconds and once at the end; values are shown as given (not averaged)."""

    def __init__(
        self,
        target: int,
        unit_name: str = "step",
        verbose: bool = True,
        interval: float = PLAIN_INTERVAL_SECONDS,
        stream: TextIO | None = None,
    ):
        self.target = target
        self.unit_name = unit_name
        self.verbose = verbose
        self.interval = interval
        self.stream = stream
        self._start = time.monotonic()
        self._last_line = self._start
        self._first = None  # the first position seen, so that a resumed loop's rate counts its own units
        self._current = 0
        self._finished = False

    def update(self, current: int, values: list[tuple[str, float]] | None = None, finalize: bool | None = None) -> None:
        if self._first is None:
            self._first = current
        self._current = current
        finished = current >= self.target if finalize is None else finalize
        now = time.monotonic()
        if not self.verbose or self._finished or (not finished and now - self._last_line < self.interval):
            return
        self._last_line, self._finished = now, finished
        elapsed = now - self._start
        done = current - self._first
        line = f"{current}/{self.target} {self.unit_name}s, {elapsed:.0f} s"
        if done > 0:
            line += f", {elapsed / done:.3g} s/{self.unit_name}"
        line += "".join(f" - {name}: {value:.4g}" for name, value in values or [])
        print(line, file=self.stream or sys.stdout, flush=True)

    def add(self, n: int, values: list[tuple[str, float]] | None = None) -> None:
        self.update(self._current + n, values)


def progress_bar(target: int, unit_name: str = "step", verbose: bool = True):
    """Keras' Progbar where stdout is a terminal, else a PlainProgress; values are shown as given either way."""
    if verbose and sys.stdout.isatty():
        import keras

        return keras.utils.Progbar(target, unit_name=unit_name, stateless_metrics=())
    return PlainProgress(target, unit_name, verbose)
