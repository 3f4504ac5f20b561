"""The committed reduced cephalogram training sets: drawn by their script, nested, inside 001-150."""

import importlib.util
from pathlib import Path

import pytest

SPLITS = Path(__file__).resolve().parents[1] / "data_splits" / "isbi2015_ceph"


def load_script():
    spec = importlib.util.spec_from_file_location("reduced_sets", SPLITS / "reduced_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = (SPLITS / "train.txt").read_text().split()


@pytest.mark.parametrize("size", [10, 25])
@pytest.mark.parametrize("draw", [1, 2, 3])
def test_committed_lists_are_the_scripts_draws(size, draw):
    committed = (SPLITS / "reduced" / str(size) / f"{draw}.txt").read_text().split()
    assert committed == load_script().reduced_set(TRAIN, size, draw)
    assert len(set(committed)) == size and set(committed) <= set(TRAIN)


def test_draws_are_nested_within_a_draw_and_differ_between_draws():
    read = lambda n, d: set((SPLITS / "reduced" / str(n) / f"{d}.txt").read_text().split())  # noqa: E731
    for draw in (1, 2, 3):
        assert read(10, draw) < read(25, draw)
    assert len({frozenset(read(10, d)) for d in (1, 2, 3)}) == 3


def test_a_size_outside_the_training_set_is_refused():
    with pytest.raises(ValueError, match="1..150"):
        load_script().reduced_set(TRAIN, 151, 1)
