"""Landmark files of other tools: 3D Slicer markups (`.mrk.json`, `.fcsv`) and COCO keypoints JSON.

3D Slicer: control point positions are physical millimetres in the patient frame, RAS or LPS as the file says
(`coordinateSystem` in `.mrk.json`, default LPS; `# CoordinateSystem = RAS|LPS|0|1` in `.fcsv`, 0 = RAS,
1 = LPS, default RAS as in the files of Slicer before 4.11). ITK and SimpleITK (so this project's "header"
image frame) are LPS: RAS points are read with x and y negated, and points are written in LPS. One file holds
one image's landmarks; its id is the file name without `.mrk.json` / `.fcsv`. A control point whose
`positionStatus` is not "defined" is missing (NaN).

COCO keypoints: `images` [{id, file_name, width, height}], `annotations` [{image_id, category_id,
keypoints [x1, y1, v1, ...], num_keypoints}], `categories` [{id, name, keypoints [names]}]. x and y are taken
as continuous pixel indices of this project's "pixel" units, unchanged: COCO's pixel coordinates with the
pixel centres at whole numbers (no half-pixel shift). Visibility 0 is a missing landmark (NaN), 1 and 2 are
present. An image's id is its file name without folders and image suffix; one annotation per image.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from scn_tf.data.io import DataError, LandmarkTable, read_text, strip_image_suffix

SLICER_SUFFIXES = (".mrk.json", ".fcsv")
SLICER_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID".split(",")
FCSV_SYSTEMS = {"0": "RAS", "1": "LPS", "RAS": "RAS", "LPS": "LPS"}


@dataclasses.dataclass
class MarkupPoints:
    """One Slicer file's control points: labels and (N, 3) positions in LPS millimetres, NaN where missing."""

    labels: list[str]
    positions: np.ndarray


def to_lps(positions: np.ndarray, system: str) -> np.ndarray:
    """(N, 3) points of a RAS or LPS frame in LPS (RAS: x and y negated)."""
    positions = np.array(positions, np.float64)
    if system == "RAS":
        positions[:, :2] *= -1
    return positions


def slicer_id(path: str | os.PathLike) -> str:
    """The image id of a Slicer markups file: its name without `.mrk.json` or `.fcsv`."""
    name = Path(path).name
    for suffix in SLICER_SUFFIXES + (".json",):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def slicer_files(path: str | os.PathLike) -> list[Path]:
    """A Slicer file, or every `*.mrk.json` and `*.fcsv` of a folder (not its subfolders), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such Slicer markups file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SLICER_SUFFIXES))
    if not files:
        raise DataError(f"{path}: folder holds no .mrk.json or .fcsv file")
    return files


def read_slicer(path: str | os.PathLike) -> MarkupPoints:
    """The control points of a `.mrk.json` (its Fiducial markups, in order) or `.fcsv` file, in LPS."""
    path = Path(path)
    if path.name.lower().endswith(".fcsv"):
        return read_fcsv(path)
    try:
        document = json.loads(read_text(path, "Slicer markups file"))
        markups = [m for m in document["markups"] if m.get("type", "Fiducial") == "Fiducial"]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not a Slicer markups JSON file ({type(error).__name__}: {error})") from None
    if not markups:
        raise DataError(f"{path}: holds no Fiducial (point list) markup")
    labels, positions = [], []
    for markup in markups:
        system = markup.get("coordinateSystem") or "LPS"
        if system not in ("LPS", "RAS"):
            raise DataError(f"{path}: coordinateSystem {system!r}, expected 'LPS' or 'RAS'")
        if markup.get("coordinateUnits", "mm") != "mm":
            raise DataError(f"{path}: coordinateUnits {markup['coordinateUnits']!r}, only 'mm' is read")
        points, control = [], markup.get("controlPoints") or []
        if not isinstance(control, list) or not all(isinstance(point, dict) for point in control):
            raise DataError(f"{path}: controlPoints is not a list of points (objects with a position)")
        for number, point in enumerate(control, start=1):
            labels.append(str(point.get("label", "")))
            defined = point.get("positionStatus", "defined") == "defined"
            position = point.get("position")
            if defined and (not isinstance(position, list) or len(position) != 3):
                raise DataError(f"{path}: control point {number} has no [x, y, z] position")
            try:
                points.append([float(v) for v in position] if defined else [math.nan] * 3)
            except (TypeError, ValueError):
                raise DataError(f"{path}: control point {number}: position {position!r} is not numbers") from None
        positions.extend(to_lps(np.reshape(points, (-1, 3)), system))
    return MarkupPoints(labels, np.reshape(np.array(positions, np.float64), (-1, 3)))


def read_fcsv(path: Path) -> MarkupPoints:
    """A Slicer `.fcsv` file: `#` comment lines (`CoordinateSystem`, `columns`), then one row per point."""
    system, columns, rows = "RAS", FCSV_COLUMNS, []
    for line in read_text(path, "Slicer .fcsv file").splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip().lower() == "coordinatesystem":
                if value.strip() not in FCSV_SYSTEMS:
                    raise DataError(f"{path}: CoordinateSystem {value.strip()!r}, expected RAS, LPS, 0 or 1")
                system = FCSV_SYSTEMS[value.strip()]
            elif key.strip().lower() == "columns":
                columns = [c.strip() for c in value.split(",")]
        elif line.strip():
            rows.append(line)
    if not {"x", "y", "z"} <= set(columns):
        raise DataError(f"{path}: the columns line names no x, y, z")
    labels, positions = [], []
    for number, fields in enumerate(csv.reader(io.StringIO("\n".join(rows))), start=1):
        record = dict(zip(columns, fields, strict=False))
        try:
            positions.append([float(record[axis]) for axis in "xyz"])
        except (KeyError, ValueError):
            raise DataError(f"{path}: point row {number} has no numeric x, y, z ({','.join(fields)!r})") from None
        labels.append(record.get("label", ""))
    return MarkupPoints(labels, to_lps(np.reshape(positions, (-1, 3)), system))


def write_slicer_json(path: str | os.PathLike, labels: Sequence[str], positions: np.ndarray) -> None:
    """A `.mrk.json` with one Fiducial markup of `positions` (N, 2 or 3; LPS mm, z 0 for 2D); NaN rows are
    control points with positionStatus "undefined"."""
    positions = np.asarray(positions, np.float64)
    if positions.shape[1] == 2:
        positions = np.concatenate([positions, np.zeros((len(positions), 1))], axis=1)
    points = []
    for number, (label, position) in enumerate(zip(labels, positions, strict=True), start=1):
        defined = bool(np.all(np.isfinite(position)))
        points.append(
            {
                "id": str(number),
                "label": label,
                "position": [float(v) for v in position] if defined else [0.0, 0.0, 0.0],
                "positionStatus": "defined" if defined else "undefined",
            }
        )
    document = {
        "@schema": SLICER_SCHEMA,
        "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "controlPoints": points}],
    }
    Path(path).write_text(json.dumps(document, indent=2))


def write_fcsv(path: str | os.PathLike, labels: Sequence[str], positions: np.ndarray) -> None:
    """A `.fcsv` in LPS (`# CoordinateSystem = LPS`); points with NaN coordinates are left out (the format has
    no "undefined" point), so that reading it back by label gives them as missing."""
    positions = np.asarray(positions, np.float64)
    if positions.shape[1] == 2:
        positions = np.concatenate([positions, np.zeros((len(positions), 1))], axis=1)
    out = io.StringIO()
    out.write("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n")
    out.write(f"# columns = {','.join(FCSV_COLUMNS)}\n")
    writer = csv.writer(out, lineterminator="\n")
    for number, (label, position) in enumerate(zip(labels, positions, strict=True), start=1):
        if np.all(np.isfinite(position)):
            writer.writerow([number, *(f"{v:.9g}" for v in position), 0, 0, 0, 1, 1, 1, 0, label, "", ""])
    Path(path).write_text(out.getvalue())


def ordered(labels: Sequence[str], values: np.ndarray, names: Sequence[str] | None, where: str) -> np.ndarray:
    """`values` (one row per label) in the order of `names` (by label; a missing name gives a NaN row), or as
    they are where `names` is None."""
    if names is None:
        return np.asarray(values, np.float64)
    result = np.full((len(names), values.shape[1]), np.nan)
    seen = set()
    for label, value in zip(labels, values, strict=True):
        if label not in names:
            raise DataError(f"{where}: label {label!r} is not one of the landmark names ({', '.join(names)})")
        if label in seen:
            raise DataError(f"{where}: label {label!r} appears twice")
        seen.add(label)
        result[list(names).index(label)] = value
    return result


def labels_as_names(label_lists: Iterable[Sequence[str]]) -> list[str] | None:
    """Every label in order of first appearance, where each list's labels are non-empty and unique; else None
    (the points are then taken in their order)."""
    names: list[str] = []
    for labels in label_lists:
        if any(not label for label in labels) or len(set(labels)) != len(labels):
            return None
        names.extend(label for label in labels if label not in names)
    return names or None


def by_order(rows: list[np.ndarray], count: int) -> list[np.ndarray]:
    """Rows padded with NaN to `count` points."""
    return [np.concatenate([r, np.full((count - len(r), r.shape[1]), np.nan)]) for r in rows]


def read_slicer_table(
    path: str | os.PathLike, names: Sequence[str] | None = None, ndim: int | None = None
) -> LandmarkTable:
    """The Slicer files at `path` (a file or a folder, slicer_files) as {id: (N, ndim) LPS mm}.

    Points are matched to `names` by label; without names, to the labels (in order of first appearance) where
    every file's labels are non-empty and unique, else taken in each file's order. `ndim` None: 2 where every
    z is 0 (a 2D image in Slicer), else 3; 2 takes x and y."""
    files = slicer_files(path)
    points, ids = {}, {}
    for file in files:
        image_id = slicer_id(file)
        if image_id in ids:
            raise DataError(f"{file}: id {image_id!r} again (also {ids[image_id]})")
        ids[image_id] = file
        points[image_id] = read_slicer(file)
    if names is None:
        names = labels_as_names(p.labels for p in points.values())
    if names is not None:
        rows = [ordered(p.labels, p.positions, names, str(ids[i])) for i, p in points.items()]
    else:
        rows = by_order([p.positions for p in points.values()], max(len(p.labels) for p in points.values()))
    if ndim is None:
        z = np.concatenate([r[:, 2] for r in rows])
        ndim = 2 if np.all(np.nan_to_num(z) == 0) else 3
    if ndim not in (2, 3):
        raise DataError(f"ndim {ndim}: landmarks are 2D or 3D")
    return LandmarkTable(
        {i: r[:, :ndim] for i, r in zip(points, rows, strict=True)}, None if names is None else list(names)
    )


def read_coco_table(path: str | os.PathLike, names: Sequence[str] | None = None) -> LandmarkTable:
    """A COCO keypoints JSON as {id: (N, 2) pixel indices}; names from its category's `keypoints` (reordered
    to `names` where given). Images without an annotation are left out."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: COCO file does not exist")
    try:
        document = json.loads(read_text(path, "COCO file"))
        images = {image["id"]: image for image in document["images"]}
        categories = {c["id"]: c for c in document.get("categories", [])}
        annotations = document["annotations"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a COCO keypoints file ({type(error).__name__}: {error})") from None
    landmarks: dict[str, np.ndarray] = {}
    category_names, image_ids = None, {}
    for number, annotation in enumerate(annotations, start=1):
        where = f"{path}, annotation {number}"
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise DataError(f"{where}: image_id {annotation.get('image_id')!r} is not in images")
        image_id = strip_image_suffix(str(image.get("file_name", image["id"])).replace("\\", "/"))
        if image_ids.setdefault(image_id, image["id"]) != image["id"]:
            raise DataError(f"{where}: two images have the id {image_id!r}")
        if image_id in landmarks:
            raise DataError(f"{where}: a second annotation of image {image_id!r} (one per image is read)")
        keypoints = annotation.get("keypoints")
        if not isinstance(keypoints, list) or len(keypoints) % 3:
            raise DataError(f"{where}: keypoints is not a list of x, y, v triples")
        try:
            triples = np.array(keypoints, np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise DataError(f"{where}: keypoints are not numbers") from None
        coords = np.where((triples[:, 2] > 0)[:, None], triples[:, :2], np.nan)
        listed = categories.get(annotation.get("category_id"), {}).get("keypoints")
        if listed is not None:
            if len(listed) != len(coords):
                raise DataError(f"{where}: {len(coords)} keypoints, its category names {len(listed)}")
            if category_names is not None and list(listed) != category_names:
                raise DataError(f"{where}: its category's keypoint names differ from the other annotations'")
            category_names = list(listed)
        landmarks[image_id] = coords
    if not landmarks:
        raise DataError(f"{path}: holds no annotation")
    counts = {len(c) for c in landmarks.values()}
    if len(counts) != 1:
        raise DataError(f"{path}: annotations have different numbers of keypoints ({sorted(counts)})")
    if names is not None:
        if category_names is None:
            raise DataError(f"{path}: its category names no keypoints, so they cannot be matched to names")
        landmarks = {i: ordered(category_names, c, names, str(path)) for i, c in landmarks.items()}
        return LandmarkTable(landmarks, list(names))
    return LandmarkTable(landmarks, category_names)


def coco_document(
    names: Sequence[str], entries: Sequence[tuple[str, Sequence[int], np.ndarray]], category: str = "landmarks"
) -> dict:
    """A COCO keypoints document of 2D landmarks: `entries` (file name, (width, height), (N, 2) pixel indices,
    NaN where missing: visibility 0 and x = y = 0), one annotation per image, visibility 2 otherwise."""
    images, annotations = [], []
    for number, (file_name, size, coords) in enumerate(entries, start=1):
        coords = np.asarray(coords, np.float64)
        present = np.all(np.isfinite(coords), axis=1)
        keypoints = []
        for point, known in zip(coords, present, strict=True):
            keypoints += [float(point[0]), float(point[1]), 2] if known else [0.0, 0.0, 0]
        images.append({"id": number, "file_name": file_name, "width": int(size[0]), "height": int(size[1])})
        annotation = {
            "id": number,
            "image_id": number,
            "category_id": 1,
            "iscrowd": 0,
            "keypoints": keypoints,
            "num_keypoints": int(present.sum()),
        }
        if present.any():
            low, high = coords[present].min(axis=0), coords[present].max(axis=0)
            annotation["bbox"] = [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]
            annotation["area"] = float(np.prod(high - low))
        annotations.append(annotation)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": 1, "name": category, "supercategory": category, "keypoints": list(names), "skeleton": []}
        ],
    }
