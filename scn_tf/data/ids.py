"""Image ids become file names (`<id>.png`, `<id>_<k>.nii.gz`, `images/<id><suffix>`): an id must name a file
inside its folder, never a path elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

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
    """`ids` as a list; a DataError naming the first bad or repeated id and `source` (the list file or flag)
    otherwise: an id names one image, and one listed twice would count twice in training and evaluation."""
    ids = list(ids)
    positions: dict[str, int] = {}
    for position, image_id in enumerate(ids, start=1):
        problem = id_problem(image_id)
        if problem:
            raise DataError(f"{source}: id {image_id!r} {problem}; an id is a file name without folders")
        if image_id in positions:
            raise DataError(f"{source}: id {image_id!r} appears twice (entries {positions[image_id]} and {position})")
        positions[image_id] = position
    return ids


def unique_ids(paths: Sequence[str | os.PathLike]) -> list[str]:
    """An id per input file: the file name without extensions, or, where names repeat, with as many parent
    folders as make it unique, joined by '__' (`scans__a` and `old__a` for scans/a.png and old/a.png);
    the same file given twice gets '#2', '#3', ..."""
    from scn_tf.data.io import strip_image_suffix

    paths = [Path(p) for p in paths]
    depth = [0] * len(paths)

    def name(index: int) -> str:
        parents = [part for part in paths[index].absolute().parent.parts if part not in ("/", "")]
        chosen = parents[len(parents) - depth[index] :] if depth[index] else []
        return "__".join(chosen + [strip_image_suffix(paths[index].name)])

    while True:
        groups: dict[str, list[int]] = {}
        for index in range(len(paths)):
            groups.setdefault(name(index), []).append(index)
        clashing = [
            members
            for members in groups.values()
            if len({paths[i].resolve() for i in members}) > 1
            and any(depth[i] < len(paths[i].absolute().parent.parts) - 1 for i in members)
        ]
        if not clashing:
            break
        for members in clashing:
            for index in members:
                depth[index] += 1
    ids, seen = [], {}
    for index in range(len(paths)):
        base = name(index)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return ids
