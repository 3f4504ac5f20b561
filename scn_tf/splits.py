"""The split lists of the original experiments (data_splits/), from a wheel or from the repository.

A wheel carries them as scn_tf/split_lists; a source checkout or an editable install reads the top-level
data_splits/ folder, the single copy of the lists.
"""

from __future__ import annotations

from pathlib import Path

from scn_tf.data.io import DataError, read_id_list


def _splits_dir() -> Path:
    packaged = Path(__file__).resolve().with_name("split_lists")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "data_splits"


SPLITS_DIR = _splits_dir()

# The cross-validation folds of each experiment script (experiments/<name>.py --fold).
CV_FOLDS = {
    "hand2d": ["0", "1", "2"],
    "skull2d": ["cv0", "cv1", "cv2", "cv3"],
    "hand3d": ["0", "1", "2", "3", "4"],
    "spine3d": ["0", "1"],
}


def split_ids(dataset: str, name: str) -> list[str]:
    """The ids of split `name` of `dataset`, e.g. ("isbi2015_ceph", "test1") or ("hand_xray", "cv/set1/train")."""
    relative = Path(dataset, name if name.endswith(".txt") else f"{name}.txt")
    if relative.is_absolute() or ".." in relative.parts:
        raise DataError(f"split {dataset}/{name}: a split name is relative to the data set's folder")
    path = SPLITS_DIR / relative
    if not path.is_file():
        raise DataError(f"{path}: split list does not exist (data sets: {', '.join(available_datasets())})")
    return read_id_list(path)


def available_datasets() -> list[str]:
    """The data sets that have split lists."""
    return sorted(p.name for p in SPLITS_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
