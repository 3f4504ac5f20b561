"""Reading images, landmark CSVs and split lists, with errors that name the file, row and problem."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from scn_tf.files import write_text_atomic

PLAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PIL_CHECKED_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_IMAGE_VOXELS = 2**32  # 16 GiB as float32: more is a broken header, not an image
# Every image file suffix read here, the longest of overlapping ones first (.nii.gz before .nii).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".dcm") + PLAIN_IMAGE_SUFFIXES


class DataError(ValueError):
    """Bad input data: the message names the file or id and what is wrong."""


def strip_image_suffix(name: str) -> str:
    """File name without its extensions; `.nii.gz` counts as one."""
    name = os.path.basename(os.fspath(name).rstrip("/"))
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


def read_image(path: str | os.PathLike, ndim: int | None = None, spacing: Sequence[float] | None = None) -> sitk.Image:
    """Reads a scalar float32 image through SimpleITK.

    A directory is read as a DICOM series. Colour images whose channels are equal become grey (other colour
    images are averaged over channels). A 3D image with a single slice is read as 2D. `spacing` imposes a
    pixel spacing (plain image formats carry none); `ndim` checks the dimension.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image file does not exist")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise DataError(f"{path}: directory holds no DICOM series")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            check_complete(path)
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(f"{path}: cannot read image ({str(error).strip().splitlines()[-1]})") from error
    check_geometry(path, image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = _to_grey(image)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1 and ndim != 3:
        image = image[:, :, 0]
    if ndim is not None and image.GetDimension() != ndim:
        raise DataError(
            f"{path}: image is {image.GetDimension()}D (size {image.GetSize()}), the configuration expects {ndim}D"
        )
    image = sitk.Cast(image, sitk.sitkFloat32)
    if spacing is not None:
        if len(spacing) != image.GetDimension():
            raise DataError(
                f"{path}: configured image_spacing {list(spacing)} does not match the "
                f"image's {image.GetDimension()} dimensions"
            )
        image.SetSpacing([float(s) for s in spacing])
    check_finite(path, image)
    return image


def check_complete(path: Path) -> None:
    """A DataError for a file cut short that SimpleITK would read without a word: a JPEG, PNG or BMP whose
    decoder (PIL) runs out of data, a gzip stream that ends early (.nii.gz), a MetaImage with fewer or more
    bytes than its header's size. Files PIL does not recognise are left to SimpleITK."""
    name = path.name.lower()
    if name.endswith(PIL_CHECKED_SUFFIXES):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
        except UnidentifiedImageError:
            return
        except (OSError, SyntaxError) as error:
            raise DataError(f"{path}: image file is truncated or corrupt ({error})") from error
    elif name.endswith((".mha", ".mhd")):
        check_meta_image(path)
    elif name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                while stream.read(1 << 24):
                    pass
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: compressed image file is truncated or corrupt ({error})") from error


META_ELEMENT_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 8,
    "MET_ULONG": 8,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


def check_meta_image(path: Path) -> None:
    """A MetaImage whose uncompressed pixel data is shorter or longer than its header's DimSize says."""
    header, offset = {}, 0
    with open(path, "rb") as file:
        for raw in file:
            offset += len(raw)
            key, _, value = raw.decode("latin-1").partition("=")
            header[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile" or offset > 1 << 16:
                break
    if header.get("CompressedData", "False").lower() == "true" or "DimSize" not in header:
        return
    data_file = header.get("ElementDataFile", "LOCAL")
    if data_file == "LOCAL":
        available = path.stat().st_size - offset
    elif (path.parent / data_file).is_file():
        available, offset = (path.parent / data_file).stat().st_size, 0
    else:
        raise DataError(f"{path}: the header's ElementDataFile {data_file} does not exist")
    try:
        voxels = math.prod(int(v) for v in header["DimSize"].split())
        expected = voxels * int(header.get("ElementNumberOfChannels", "1")) * META_ELEMENT_BYTES[header["ElementType"]]
    except (KeyError, ValueError):
        return  # SimpleITK reports a header it cannot parse
    if available != expected:
        raise DataError(
            f"{path}: the header's DimSize {header['DimSize']} ({header['ElementType']}) needs "
            f"{expected} bytes of pixel data, the file holds {available}: truncated or a wrong header"
        )


def check_geometry(path: Path, image: sitk.Image) -> None:
    """Sizes of at least one pixel and positive finite spacings, as a header can claim otherwise."""
    size, spacing = image.GetSize(), image.GetSpacing()
    if min(size) < 1 or math.prod(size) > MAX_IMAGE_VOXELS:
        raise DataError(f"{path}: image size {size} is not between 1 and {MAX_IMAGE_VOXELS} voxels")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise DataError(f"{path}: image spacing {spacing} is not positive and finite")


def check_finite(path: Path, image: sitk.Image) -> None:
    """A DataError naming the first non-finite pixel: NaN or infinite pixels would silently poison every
    heatmap (all landmarks land on one pixel)."""
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(v) for v in bad[0][::-1])
        raise DataError(f"{path}: {len(bad)} non-finite pixel value(s) (NaN or infinite), the first at index {first}")


IMAGE_FRAMES = ("header", "zero_origin")


def apply_image_frame(image: sitk.Image, frame: str) -> sitk.Image:
    """The image in the configured physical frame (a copy; the argument is left as it is).

    "header": the file's origin and direction. "zero_origin": origin 0 and identity direction, spacing kept,
    as the original's image datasource loads every image; its spine landmark CSV lies in that frame.
    """
    if frame not in IMAGE_FRAMES:
        raise ValueError(f"image frame must be one of {IMAGE_FRAMES}, got {frame!r}")
    if frame == "header":
        return image
    result = sitk.Image(image)
    result.SetOrigin([0.0] * image.GetDimension())
    result.SetDirection([float(v) for v in np.eye(image.GetDimension()).ravel()])
    return result


def _to_grey(image: sitk.Image) -> sitk.Image:
    channels = [
        sitk.VectorIndexSelectionCast(image, c, sitk.sitkFloat32) for c in range(image.GetNumberOfComponentsPerPixel())
    ]
    arrays = [sitk.GetArrayViewFromImage(c) for c in channels]
    if all(np.array_equal(arrays[0], a) for a in arrays[1:]):
        return channels[0]
    grey = sitk.GetImageFromArray(np.mean(arrays, axis=0).astype(np.float32))
    grey.CopyInformation(channels[0])
    return grey


def read_landmarks_csv(path: str | os.PathLike, num_landmarks: int, ndim: int) -> dict[str, np.ndarray]:
    """Reads `id,x1,y1[,z1],...` rows (no header, NaN = missing) into {id: (num_landmarks, ndim) array}."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: landmark file does not exist")
    expected = 1 + num_landmarks * ndim
    landmarks = {}
    for row_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != expected:
            raise DataError(
                f"{path}, row {row_number} (id {fields[0]!r}): {len(fields)} columns, expected "
                f"{expected} (id + {num_landmarks} landmarks x {ndim} coordinates)"
            )
        try:
            values = np.array([float(field) if field else math.nan for field in fields[1:]], np.float64)
        except ValueError as error:
            raise DataError(f"{path}, row {row_number} (id {fields[0]!r}): {error}") from error
        if fields[0] in landmarks:
            raise DataError(f"{path}, row {row_number}: id {fields[0]!r} appears twice")
        landmarks[fields[0]] = values.reshape(num_landmarks, ndim)
    return landmarks


def format_landmark_row(image_id: str, coords: np.ndarray) -> str:
    """One row of the landmark CSV format; NaN for missing coordinates."""
    return ",".join([image_id] + ["NaN" if not np.isfinite(v) else f"{v:.6g}" for v in np.ravel(coords)])


def write_landmarks_csv(path: str | os.PathLike, landmarks: dict[str, np.ndarray], overwrite: bool = True) -> None:
    """Writes {id: (N, d)} in the CSV format, through a temporary file so that no half file remains."""
    write_text_atomic(path, "".join(format_landmark_row(k, v) + "\n" for k, v in landmarks.items()), overwrite)


def read_id_list(path: str | os.PathLike) -> list[str]:
    """One id per line; blank lines and lines starting with '#' are ignored; every id must be a plain file name."""
    from scn_tf.data.ids import validate_ids  # ids imports this module

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: id list does not exist")
    return validate_ids(
        [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")], str(path)
    )


def outside_extent(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """(N,) True where an annotated physical point lies outside the image's extent (voxel edges included)."""
    indices = physical_to_pixel(image, points)
    with np.errstate(invalid="ignore"):
        inside = np.all((indices >= -0.5) & (indices <= np.array(image.GetSize()) - 0.5), axis=1)
    return np.all(np.isfinite(points), axis=1) & ~inside


def pixel_to_physical(image: sitk.Image, coords: np.ndarray) -> np.ndarray:
    """Continuous pixel indices (N, d) to physical points of `image`; NaN rows stay NaN."""
    origin = np.array(image.GetOrigin())
    matrix = np.array(image.GetDirection()).reshape(image.GetDimension(), -1) * np.array(image.GetSpacing())
    return origin + coords @ matrix.T


def physical_to_pixel(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Physical points (N, d) to continuous pixel indices of `image`; NaN rows stay NaN."""
    origin = np.array(image.GetOrigin())
    matrix = np.array(image.GetDirection()).reshape(image.GetDimension(), -1) * np.array(image.GetSpacing())
    return (points - origin) @ np.linalg.inv(matrix).T
