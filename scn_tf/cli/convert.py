"""scn-convert: lay out a public dataset download the way the experiment scripts expect.

  scn-convert --dataset isbi2015 --images RawImage --annotations AnnotationsByMD --output_dir DATA
  scn-convert --dataset hand --images DHA_images --landmarks all.csv --output_dir DATA
  scn-convert --dataset spine --images CSI2014_volumes --landmarks points_world_coordinates.csv --output_dir DATA
  scn-convert --dataset landmarks --from slicer|coco|csv --input FILE_OR_FOLDER [--images FOLDER] --output_dir DATA

isbi2015: images (BMP or JPEG, searched recursively) are linked as images/<id>.<ext>; the doctors' text
annotations (<annotations>/400_senior/<id>.txt and 400_junior/<id>.txt: 19 lines `x,y` in pixels, further
lines ignored) become annotations/{senior,junior,mean}_mm.csv at 0.1 mm per pixel. The challenge ground
truth (Wang et al. 2015, the paper's) equals senior except landmark 16 on 301-400, which the download lacks:
annotations/challenge_mm.csv is therefore senior on ids up to 300 only, or, with `--challenge_csv`, a copy
of the original experiments' all_challenge.csv (same layout, mm). A data.json beside them sets the image
suffix, for `--config`.
hand / spine: images are linked as images/<id>.<ext> for every id of the landmark CSV (the file named <id>,
or <id> followed by `_`, `-`, `.` or a space: `31` never matches `310.mha`), and the CSV is copied (all.csv /
points_world_coordinates.csv).
landmarks: another tool's landmark files become DATA/landmarks.csv (the annotation CSV, no header),
DATA/ids.txt (every id) and DATA/data.json (num_landmarks, ndim, landmark_units, landmark_names, for
`--config`); with --images, the images of those ids are linked as for hand / spine. `--from slicer`: a
3D Slicer markups file or a folder of them, one per image, `<id>.mrk.json` or `<id>.fcsv`; written in mm,
LPS, the images' physical space ("header" image frame); RAS files are turned into LPS. `--from coco`: one
COCO keypoints JSON; x, y as pixel indices, unchanged (pixel units); visibility 0 is missing. `--from csv`:
a landmark CSV with a header row naming the landmarks (`id,tip_x,tip_y,...`); give --landmark_units.
Landmarks are matched to --landmark_names by label where given, else to the files' own names (Slicer
labels, COCO keypoint names, CSV header), else taken in order; missing ones are NaN.
Every output is checked before the first is written: a source file is never deleted or replaced (an output
path that is, or resolves to, one of the inputs is refused; a link already pointing at its image is kept),
other existing files are replaced only with --overwrite, and the outputs appear together at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from scn_tf.cli.common import command
from scn_tf.data.formats import ordered, read_coco_table, read_slicer_table
from scn_tf.data.ids import validate_ids
from scn_tf.data.io import (
    IMAGE_SUFFIXES,
    DataError,
    LandmarkTable,
    header_dimension,
    read_landmarks_csv,
    read_landmarks_table,
    strip_image_suffix,
    write_landmarks_csv,
)
from scn_tf.files import OutputError, StagedOutputs, inside, write_json_atomic
from scn_tf.listing import shortened


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_enum(
        "dataset",
        None,
        ["isbi2015", "hand", "spine", "landmarks"],
        "Which download; 'landmarks': landmark files of another tool (--from).",
        required=True,
        flag_values=values,
    )
    flags.DEFINE_string(
        "images",
        None,
        "Folder of the downloaded images (searched recursively); optional for --dataset landmarks.",
        flag_values=values,
    )
    flags.DEFINE_enum(
        "from", None, ["slicer", "coco", "csv"], "--dataset landmarks: the landmark file format.", flag_values=values
    )
    flags.DEFINE_string(
        "input",
        None,
        "--dataset landmarks: a Slicer file or folder of <id>.mrk.json / <id>.fcsv files, a COCO JSON, or a CSV.",
        flag_values=values,
    )
    flags.DEFINE_list(
        "landmark_names",
        None,
        "--dataset landmarks: the landmarks' order, matched to the files' labels (default: the files' own).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "ndim", None, "--dataset landmarks: 2 or 3 (default: 2 where every Slicer z is 0; COCO: 2).", flag_values=values
    )
    flags.DEFINE_enum(
        "landmark_units",
        None,
        ["pixel", "mm"],
        "--dataset landmarks --from csv: the CSV's units (Slicer files are mm, COCO pixel).",
        flag_values=values,
    )
    flags.DEFINE_string("annotations", None, "isbi2015: the AnnotationsByMD folder.", flag_values=values)
    flags.DEFINE_string("landmarks", None, "hand / spine: the landmark CSV.", flag_values=values)
    flags.DEFINE_string(
        "challenge_csv",
        None,
        "isbi2015: the original experiments' all_challenge.csv (no header, "
        "id,x1,y1,...,x19,y19 in mm), copied as annotations/challenge_mm.csv; without it that file "
        "holds ids 001-300 only, where the challenge ground truth equals senior.",
        flag_values=values,
    )
    flags.DEFINE_string("output_dir", None, "Dataset folder to create.", required=True, flag_values=values)
    flags.DEFINE_bool(
        "overwrite", False, "Replace existing files in --output_dir (never a source file).", flag_values=values
    )


ISBI_PIXEL_MM = 0.1
ISBI_LAST_SENIOR_EQUALS_CHALLENGE = 300  # from 301 on, the challenge's landmark 16 is not the senior one


def find_images(folder: Path) -> dict[str, Path]:
    images = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES):
            images[strip_image_suffix(path.name)] = path
    if not images:
        raise DataError(f"{folder}: no image files found")
    return images


def matching_image(images: dict[str, Path], image_id: str) -> Path | None:
    """The image named exactly `image_id`, else the one whose name is `image_id` followed by a separator
    (`_`, `-`, `.`, space): `31` matches `31.mha` and `31_hand.png`, never `310.mha`. Two candidates of the
    second kind are an error."""
    if image_id in images:
        return images[image_id]
    candidates = [path for name, path in images.items() if name.startswith(image_id) and name[len(image_id)] in "_-. "]
    if len(candidates) > 1:
        raise DataError(f"id {image_id}: several images match ({shortened((p.name for p in candidates), 5)})")
    return candidates[0] if candidates else None


def plan_links(staged: StagedOutputs, links: dict[Path, Path]) -> dict[Path, Path]:
    """Claims every target of {target: source} but those already linking to their source (kept as they are)."""
    planned = {}
    for target, source in links.items():
        if not (target.is_symlink() and target.resolve() == source.resolve()):
            planned[staged.claim(target)] = source
    return planned


def write_links(staged: StagedOutputs, links: dict[Path, Path]) -> None:
    for target, source in links.items():
        os.symlink(source.resolve(), staged.path(target))


def suffix_of(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def read_isbi_annotation(path: Path, landmarks: int = 19) -> np.ndarray:
    """The first 19 `x,y` pixel lines of an ISBI 2015 doctor's file, in mm."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < landmarks:
        raise DataError(f"{path}: {len(lines)} lines, expected at least {landmarks} 'x,y' lines")
    points = []
    for number, line in enumerate(lines[:landmarks], start=1):
        try:
            x, y = (float(v) for v in line.replace(" ", "").split(",")[:2])
        except ValueError as error:
            raise DataError(f"{path}, line {number}: expected 'x,y', got {line!r}") from error
        points.append((x * ISBI_PIXEL_MM, y * ISBI_PIXEL_MM))
    return np.array(points)


def convert_isbi(
    images: dict[str, Path],
    annotations: Path,
    output: Path,
    staged: StagedOutputs,
    challenge: Path | None = None,
    images_dir: Path | None = None,
) -> None:
    """Lays out the ISBI 2015 download (images found in `images_dir`, for the error message) in `output`."""
    if challenge is not None:
        read_landmarks_csv(challenge, 19, 2)  # checked before anything is written
    tables = {}
    for doctor in ("senior", "junior"):
        folder = annotations / f"400_{doctor}"
        if not folder.is_dir():
            raise DataError(f"{folder}: annotation folder does not exist")
        tables[doctor] = {path.stem: read_isbi_annotation(path) for path in sorted(folder.glob("*.txt"))}
    ids = sorted(set(tables["senior"]) & set(images))
    if not ids:
        raise DataError(
            f"no id has both an image in {images_dir or 'the image folder'} and an annotation in {annotations}"
        )
    links = plan_links(
        staged,
        {
            inside(output, Path("images") / f"{i}{suffix_of(images[i])}"): images[i]
            for i in validate_ids(ids, str(annotations))
        },
    )
    junior = [i for i in ids if i in tables["junior"]]
    tables = {
        "senior_mm.csv": {i: tables["senior"][i] for i in ids},
        "challenge_mm.csv": None
        if challenge is not None
        else {i: tables["senior"][i] for i in ids if i.isdigit() and int(i) <= ISBI_LAST_SENIOR_EQUALS_CHALLENGE},
        "junior_mm.csv": {i: tables["junior"][i] for i in junior},
        "mean_mm.csv": {i: (tables["senior"][i] + tables["junior"][i]) / 2 for i in junior},
    }
    staged.claim_all(output / "annotations", tables)
    staged.claim(output / "data.json")
    with staged:
        write_links(staged, links)
        for name, table in tables.items():
            target = staged.path(output / "annotations" / name)
            if table is None:
                shutil.copyfile(challenge, target)
            else:
                write_landmarks_csv(target, table)
        write_json_atomic(staged.path(output / "data.json"), {"data": {"image_suffix": suffix_of(images[ids[0]])}})
    logging.info("%d cephalograms laid out in %s", len(ids), output)


def convert_listed(
    images: dict[str, Path],
    landmarks: Path,
    output: Path,
    csv_name: str,
    staged: StagedOutputs,
    images_dir: Path | None = None,
) -> None:
    """Links the image of every id of the landmark CSV into `output`/images and copies the CSV as `csv_name`."""
    if not landmarks.exists():
        raise DataError(f"{landmarks}: landmark CSV does not exist")
    ids = validate_ids(
        [line.split(",", 1)[0].strip() for line in landmarks.read_text().splitlines() if line.strip()], str(landmarks)
    )
    matches = {image_id: matching_image(images, image_id) for image_id in ids}
    matches = {image_id: path for image_id, path in matches.items() if path is not None}
    if not matches:
        raise DataError(f"no image in {images_dir or 'the image folder'} matches an id of {landmarks}")
    links = plan_links(
        staged, {inside(output, Path("images") / f"{i}{suffix_of(path)}"): path for i, path in matches.items()}
    )
    staged.claim(output / csv_name)
    staged.claim(output / "data.json")
    with staged:
        write_links(staged, links)
        shutil.copyfile(landmarks, staged.path(output / csv_name))
        suffix = sorted(suffix_of(path) for path in matches.values())[0]
        write_json_atomic(staged.path(output / "data.json"), {"data": {"image_suffix": suffix}})
    logging.info("%d of %d ids have an image; laid out in %s", len(matches), len(ids), output)


def read_landmark_files(values: flags.FlagValues) -> tuple[LandmarkTable, str]:
    """The landmarks of --input in --from's format and their units."""
    kind, source = values["from"].value, Path(values.input)
    names = values.landmark_names
    if kind == "slicer":
        return read_slicer_table(source, names, values.ndim), "mm"
    if kind == "coco":
        if values.ndim not in (None, 2):
            raise DataError("COCO keypoints are 2D: --ndim 2 or none")
        return read_coco_table(source, names), "pixel"
    if not values.landmark_units:
        raise app.UsageError("--from csv needs --landmark_units pixel or mm")
    ndim = values.ndim or header_dimension(source) or 2
    table = read_landmarks_table(source, None, ndim)
    if names is not None and table.names is not None:
        table = LandmarkTable(
            {i: ordered(table.names, c, names, str(source)) for i, c in table.landmarks.items()}, list(names)
        )
    elif names is not None:
        table = LandmarkTable(table.landmarks, list(names))
    return table, values.landmark_units


def convert_landmarks(values: flags.FlagValues, output: Path) -> int:
    """--dataset landmarks: landmarks.csv, ids.txt, data.json and, with --images, the image links."""
    if not values["from"].value or not values.input:
        raise app.UsageError("--dataset landmarks needs --from and --input")
    try:
        table, units = read_landmark_files(values)
        landmarks = table.landmarks
        ids = validate_ids(list(landmarks), values.input)
        first = next(iter(landmarks.values()))
        if table.names is not None and len(table.names) != len(first):
            raise DataError(f"{len(table.names)} landmark names for {len(first)} landmarks")
        if table.names is not None and len(set(table.names)) != len(table.names):
            twice = sorted({name for name in table.names if table.names.count(name) > 1})
            raise DataError(f"landmark names appear twice: {', '.join(twice)}")
        sources = [Path(values.input)]
        links, suffix = {}, None
        if values.images:
            images = find_images(Path(values.images))
            sources += images.values()
            matches = {i: path for i in ids if (path := matching_image(images, i)) is not None}
            if not matches:
                raise DataError(f"no image in {values.images} matches an id of {values.input}")
            unmatched = [i for i in ids if i not in matches]
            if unmatched:
                logging.warning("%d id(s) have no image: %s", len(unmatched), shortened(unmatched, 5))
            links = {inside(output, Path("images") / f"{i}{suffix_of(p)}"): p for i, p in matches.items()}
            suffix = sorted(suffix_of(p) for p in matches.values())[0]
        staged = StagedOutputs(values.overwrite, sources)
        links = plan_links(staged, links)
        staged.claim_all(output, ["landmarks.csv", "ids.txt", "data.json"])
        data = {
            "num_landmarks": len(first),
            "ndim": int(first.shape[1]),
            "landmark_units": units,
            "landmark_names": table.names,
            "landmarks_csv": "landmarks.csv",
        }
        if units == "mm":
            data["image_frame"] = "header"
        if suffix is not None:
            data["image_suffix"] = suffix
        with staged:
            write_links(staged, links)
            write_landmarks_csv(staged.path(output / "landmarks.csv"), landmarks)
            (staged.path(output / "ids.txt")).write_text("".join(f"{i}\n" for i in ids))
            write_json_atomic(staged.path(output / "data.json"), {"data": data})
    except (DataError, OutputError) as error:
        logging.error("%s", error)
        return 1
    logging.info("%d images' landmarks (%d per image, %s) written to %s", len(ids), len(first), units, output)
    return 0


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    output = Path(values.output_dir)
    if values.dataset == "landmarks":
        return convert_landmarks(values, output)
    if not values.images:
        raise app.UsageError("--images is required")
    images_dir = Path(values.images)
    try:
        images = find_images(images_dir)
        sources = [*images.values(), *(Path(v) for v in (values.landmarks, values.challenge_csv) if v)]
        if values.annotations:
            sources += Path(values.annotations).rglob("*.txt")
        staged = StagedOutputs(values.overwrite, sources)
        if values.dataset == "isbi2015":
            if not values.annotations:
                raise app.UsageError("--annotations is required for isbi2015")
            convert_isbi(
                images,
                Path(values.annotations),
                output,
                staged,
                Path(values.challenge_csv) if values.challenge_csv else None,
                images_dir,
            )
        else:
            if not values.landmarks:
                raise app.UsageError("--landmarks is required")
            name = "all.csv" if values.dataset == "hand" else "points_world_coordinates.csv"
            convert_listed(images, Path(values.landmarks), output, name, staged, images_dir)
    except (DataError, OutputError) as error:
        logging.error("%s", error)
        return 1
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
