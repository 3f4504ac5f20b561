"""Image ids become file names (`<id>.png`, `<id>_<k>.nii.gz`, `images/<id><suffix>`): an id must name a file
inside its folder, never a path elsewhere."""

from __future__ import annotations

from typing import Iterable

from scn_tf.data.io import DataError

FORBIDDEN = ("/", "\\", "\0")


def id_problem(image_id: str) -> str | None:
    """Why `image_id` cannot be a file name inside a folder, or None if it can."""
    if not image_id or not image_id.strip():
        return "is empty"
    if any(character in image_id for character in FORBIDDEN):
        return "contains a path separator"
    if image_id in (".", "..") or image_id.startswith(".."):
        return "starts with '..'"
    if len(image_id) >= 2 and image_id[1] == ":":
        return "looks like a drive letter"
    return None


def validate_ids(ids: Iterable[str], source: str) -> list[str]:
    """`ids` as a list; a DataError naming the first bad id and `source` (the list file or flag) otherwise."""
    ids = list(ids)
    for image_id in ids:
        problem = id_problem(image_id)
        if problem:
            raise DataError(f"{source}: id {image_id!r} {problem}; an id is a file name without folders")
    return ids
