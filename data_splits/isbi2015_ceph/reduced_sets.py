"""Writes the reduced ISBI 2015 training sets: reduced/<N>/<D>.txt, N ids drawn from train.txt (001-150).

  python data_splits/isbi2015_ceph/reduced_sets.py            # rewrites the committed lists

Draw D (1, 2, 3) is one seeded permutation of the training ids (seed 2019 + D); the set of size N is its
first N ids, so within a draw the sets are nested (the 10 images are among the 25). The lists are drawn once
and committed; experiments/skull2d.py --train_subset N --subset_draw D reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
HERE = Path(__file__).resolve().parent


def reduced_set(train_ids: list[str], size: int, draw: int) -> list[str]:
    """The first `size` ids of draw `draw`'s seeded permutation, in the order of train.txt."""
    if not 0 < size <= len(train_ids):
        raise ValueError(f"size {size} must lie in 1..{len(train_ids)}")
    order = np.random.default_rng(2019 + draw).permutation(len(train_ids))
    return [train_ids[i] for i in sorted(order[:size])]


def main(argv):
    del argv
    train_ids = (HERE / "train.txt").read_text().split()
    for size in map(int, FLAGS.sizes):
        for draw in range(1, FLAGS.draws + 1):
            path = HERE / "reduced" / str(size) / f"{draw}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(reduced_set(train_ids, size, draw)) + "\n")
    return 0


if __name__ == "__main__":
    flags.DEFINE_list("sizes", ["10", "25"], "Training set sizes.")
    flags.DEFINE_integer("draws", 3, "Random draws per size.")
    app.run(main)
