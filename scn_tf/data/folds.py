"""Seeded k-fold splits, for data sets whose original fold lists are not public (hand MRI)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def k_fold(ids: Sequence[str], folds: int, fold: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, test) of fold `fold`: the ids are shuffled with `seed` and cut into `folds` near-equal parts."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is not in 0..{folds - 1}")
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    parts = np.array_split(order, folds)
    test = sorted(ids[i] for i in parts[fold])
    return [i for i in ids if i not in set(test)], test
