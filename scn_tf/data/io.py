"""Reading images, landmark CSVs and split lists, with errors that name the file, row and problem."""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import logging
import math
import os
import resource
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from scn_tf.files import write_text_atomic

log = logging.getLogger("scn_tf")

PLAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PIL_CHECKED_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_IMAGE_VOXELS = 2**32  # 16 GiB as float32: more is a broken header, not an image
# Every image file suffix read here, the longest of overlapping ones first (.nii.gz before .nii).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".dcm") + PLAIN_IMAGE_SUFFIXES
# SimpleITK pixel ids (scalar and vector) -> the NumPy name of one component, the pixel type recorded and compared
PIXEL_TYPE_NAMES = {
    getattr(sitk, f"sitk{kind}{suffix}"): suffix.lower()
    for suffix in ("UInt8", "Int8", "UInt16", "Int16", "UInt32", "Int32", "UInt64", "Int64", "Float32", "Float64")
    for kind in ("", "Vector")
}
PIXEL_TYPE_POLICIES = ("refuse", "rescale")


class DataError(ValueError):
    """Bad input data: the message names the file or id and what is wrong."""


def strip_image_suffix(name: str) -> str:
    """File name without its extensions; `.nii.gz` counts as one."""
    name = os.path.basename(os.fspath(name).rstrip("/"))
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


def gib(count: float) -> str:
    return f"{count / 2**30:.1f} GiB"


def available_memory() -> int:
    """Bytes a new allocation can get without swapping: the kernel's MemAvailable, lowered to what the cgroup
    (container) limit and this process's address-space limit (ulimit -v) leave; physical memory where none
    of them is known."""
    page = os.sysconf("SC_PAGE_SIZE")
    available = page * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            available = min(available, int(limit) - int(used))
    except (OSError, ValueError, IndexError):
        pass
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY:
        try:
            mapped = int(Path("/proc/self/statm").read_text().split()[0]) * page
        except (OSError, ValueError, IndexError):
            mapped = 0
        available = min(available, address_space - mapped)
    return max(available, 0)


def pixel_type_name(pixel_id: int) -> str:
    """The NumPy name ("uint8", "int16", "float32", ...) of one component of SimpleITK's `pixel_id`."""
    return PIXEL_TYPE_NAMES.get(pixel_id) or sitk.GetPixelIDValueAsString(pixel_id)


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding its pixels."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    components: int
    pixel_type: str  # one component's NumPy name
    through_pil: bool = False  # a grey+alpha PNG, which SimpleITK cannot read

    def bytes_to_read(self) -> int:
        """Memory to read this image and use it: the decoded pixels, the float32 copy of every colour component
        and the float32 grey image made from them, a byte per voxel for the finiteness check, and the prepared
        (smoothed) float32 copy that training and prediction make."""
        try:
            itemsize = np.dtype(self.pixel_type).itemsize
        except TypeError:
            itemsize = 16
        floats = self.components + (1 if self.components > 1 else 0) + 1
        return math.prod(self.size) * (self.components * itemsize + 4 * floats + 1)


def read_header(path: str | os.PathLike) -> ImageHeader:
    """The header of `path` (an image file or a DICOM series folder), without decoding any pixels: SimpleITK's
    ReadImageInformation reads only the header (PNG, JPEG, MetaImage, NIfTI, NRRD, DICOM); a grey+alpha PNG,
    which SimpleITK cannot read, through PIL's Image.open, which reads only the header as well."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image file does not exist")
    if path.is_dir():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))
        if not files:
            raise DataError(f"{path}: directory holds no DICOM series")
        first = _header_reader(path, files[0])
        spacing = list(first.GetSpacing()[:2]) + [first.GetSpacing()[2] if first.GetDimension() > 2 else 1.0]
        if len(files) > 1:
            step = np.linalg.norm(np.subtract(_header_reader(path, files[1]).GetOrigin(), first.GetOrigin()))
            spacing[2] = float(step) if step > 0 else spacing[2]
        return ImageHeader(
            tuple(first.GetSize()[:2]) + (len(files),),
            tuple(spacing),
            first.GetNumberOfComponents(),
            pixel_type_name(first.GetPixelID()),
        )
    try:
        reader = _header_reader(path, path)
    except DataError:
        header = _grey_alpha_header(path)
        if header is None:
            raise
        return header
    return ImageHeader(
        tuple(reader.GetSize()),
        tuple(reader.GetSpacing()),
        reader.GetNumberOfComponents(),
        pixel_type_name(reader.GetPixelID()),
    )


def _header_reader(path: Path, file: str | os.PathLike) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(file))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise DataError(f"{path}: cannot read image ({str(error).strip().splitlines()[-1]})") from error
    return reader


def _grey_alpha_header(path: Path) -> ImageHeader | None:
    """The header of an 8-bit grey+alpha PNG as PIL reads it; None for anything else."""
    if not path.name.lower().endswith(".png"):
        return None
    from PIL import Image

    try:
        with Image.open(path) as picture:
            if picture.mode != "LA":
                return None
            return ImageHeader(tuple(picture.size), (1.0, 1.0), 2, "uint8", through_pil=True)
    except Exception:  # PIL raises many kinds; SimpleITK's error stands
        return None


def check_header(path: Path, header: ImageHeader, available: int | None = None) -> None:
    """Before any pixel is decoded: a size of 1 to MAX_IMAGE_VOXELS voxels whose reading fits the memory
    `available` (default: available_memory()), and positive finite spacings; a header claiming more is
    broken (or the image too large for this machine) and would otherwise reach the decoder."""
    size, needed = header.size, header.bytes_to_read()
    if min(size) < 1:
        raise DataError(f"{path}: image size {size} in the header is not between 1 and {MAX_IMAGE_VOXELS} voxels")
    if math.prod(size) > MAX_IMAGE_VOXELS:
        raise DataError(
            f"{path}: image size {size} in the header is not between 1 and {MAX_IMAGE_VOXELS} voxels "
            f"(reading it would need {gib(needed)} of memory)"
        )
    available = available_memory() if available is None else available
    if needed > available:
        raise DataError(
            f"{path}: image size {size} in the header ({header.components} x {header.pixel_type} per pixel) "
            f"would need {gib(needed)} of memory to read, {gib(available)} is available: a broken header, or "
            "an image too large for this machine"
        )
    if not all(math.isfinite(s) and s > 0 for s in header.spacing):
        raise DataError(f"{path}: image spacing {header.spacing} in the header is not positive and finite")


def read_image(path: str | os.PathLike, ndim: int | None = None, spacing: Sequence[float] | None = None) -> sitk.Image:
    """Reads a scalar float32 image through SimpleITK (read_image_typed without the pixel type)."""
    return read_image_typed(path, ndim, spacing)[0]


def read_image_typed(
    path: str | os.PathLike, ndim: int | None = None, spacing: Sequence[float] | None = None
) -> tuple[sitk.Image, str]:
    """A scalar float32 image and the file's pixel type ("uint8", "uint16", "int16", "float32", ...; of one
    component for colour images).

    The header is checked first (check_header: size and memory), before any decoder runs. A directory is
    read as a DICOM series. A 2- or 4-component image (grey or colour with alpha) loses its last component,
    with a warning; colour images whose channels are equal become grey, other colour images are averaged
    over channels. A 3D image with a single slice is read as 2D. `spacing` imposes a pixel spacing (plain
    image formats carry none); `ndim` checks the dimension.
    """
    path = Path(path)
    header = read_header(path)
    check_header(path, header)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
            image = reader.Execute()
        else:
            check_complete(path)
            image = _read_grey_alpha(path) if header.through_pil else sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(f"{path}: cannot read image ({str(error).strip().splitlines()[-1]})") from error
    check_geometry(path, image)
    pixel_type = pixel_type_name(image.GetPixelID())
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = _to_grey(path, image)
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
    return image, pixel_type


def _read_grey_alpha(path: Path) -> sitk.Image:
    """A grey+alpha PNG as a 2-component image with SimpleITK's PNG geometry (spacing 1, origin 0)."""
    from PIL import Image

    with Image.open(path) as picture:
        return sitk.GetImageFromArray(np.asarray(picture), isVector=True)


def check_complete(path: Path) -> None:
    """A DataError for a file cut short that SimpleITK would read without a word: a JPEG, PNG or BMP whose
    decoder (PIL) runs out of data, a gzip stream that ends early (.nii.gz), a MetaImage with fewer or more
    bytes than its header's size. Files PIL does not recognise are left to SimpleITK. Call it after
    check_header: it decodes the whole image."""
    name = path.name.lower()
    if name.endswith(PIL_CHECKED_SUFFIXES):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
        except UnidentifiedImageError:
            return
        except Image.DecompressionBombError as error:
            raise DataError(f"{path}: too large for the completeness check of this format ({error})") from error
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


def _to_grey(path: Path, image: sitk.Image) -> sitk.Image:
    """One float32 component: a 2- or 4-component image (grey or RGB with alpha) loses its last component,
    with a warning, so that transparency does not darken the grey value; the colour channels are averaged,
    or taken as they are where all are equal."""
    components = image.GetNumberOfComponentsPerPixel()
    if components in (2, 4):
        log.warning(
            "%s: %d-component image, its last component taken as alpha (transparency) and dropped", path, components
        )
        components -= 1
    channels = [sitk.VectorIndexSelectionCast(image, c, sitk.sitkFloat32) for c in range(components)]
    arrays = [sitk.GetArrayViewFromImage(c) for c in channels]
    if all(np.array_equal(arrays[0], a) for a in arrays[1:]):
        return channels[0]
    grey = sitk.GetImageFromArray(np.mean(arrays, axis=0).astype(np.float32))
    grey.CopyInformation(channels[0])
    return grey


def describe_pixel_type(name: str) -> str:
    """A pixel type with its bit depth: "8-bit (uint8)", "16-bit (int16)", "32-bit float (float32)"."""
    try:
        dtype = np.dtype(name)
    except TypeError:
        return name
    return f"{dtype.itemsize * 8}-bit{' float' if dtype.kind == 'f' else ''} ({name})"


def _kind(name: str) -> str:
    try:
        return np.dtype(name).kind
    except TypeError:
        return "?"


def pixel_type_matches(pixel_type: str, trained_types: Sequence[str]) -> bool:
    """`pixel_type` is one of `trained_types`, or a float type where those hold one (floats keep their values
    at any precision)."""
    return pixel_type in trained_types or (_kind(pixel_type) == "f" and any(_kind(t) == "f" for t in trained_types))


def conform_pixel_type(
    image: sitk.Image,
    path: str | os.PathLike,
    pixel_type: str,
    trained_types: Sequence[str],
    policy: str = "refuse",
    value_range: Sequence[float] | None = None,
) -> sitk.Image:
    """`image` (float32, as read_image returns it) as the model expects its values.

    Unchanged where the file's `pixel_type` matches a training images' type (`trained_types`, most frequent
    first; pixel_type_matches). Otherwise policy "refuse" raises a DataError naming the file and both bit
    depths: under fixed intensity normalisation a 16-bit picture of what the model knows as 8-bit is 257
    times too bright. Policy "rescale" maps the values onto the most frequent training type: integer ->
    integer by the types' full ranges (minimum onto minimum, maximum onto maximum: uint16 -> uint8 is
    value x 255 / 65535); float -> integer by the image's own minimum and maximum onto the integer type's
    range; integer -> float by the image's minimum and maximum onto `value_range`, the training images'
    (minimum, maximum).
    """
    if policy not in PIXEL_TYPE_POLICIES:
        raise ValueError(f"pixel type policy must be one of {PIXEL_TYPE_POLICIES}, got {policy!r}")
    if pixel_type_matches(pixel_type, trained_types):
        return image
    target = trained_types[0]
    if policy == "refuse" or "?" in (_kind(pixel_type), _kind(target)):
        trained = " or ".join(describe_pixel_type(t) for t in trained_types)
        raise DataError(
            f"{path}: {describe_pixel_type(pixel_type)} image, the model was trained on {trained} images; "
            f"convert the image to {target}, or map its values onto the {target} range (scn-predict "
            "--pixel_type_policy rescale, or data.pixel_type_policy 'rescale' in the configuration)"
        )
    array = sitk.GetArrayViewFromImage(image).astype(np.float64)
    if _kind(target) == "f":
        if value_range is None:
            raise DataError(f"{path}: cannot rescale a {pixel_type} image to {target}: no training value range")
        low, high = value_range
        source_low, source_high = float(array.min()), float(array.max())
    elif _kind(pixel_type) == "f":
        low, high = np.iinfo(target).min, np.iinfo(target).max
        source_low, source_high = float(array.min()), float(array.max())
    else:
        low, high = np.iinfo(target).min, np.iinfo(target).max
        source_low, source_high = np.iinfo(pixel_type).min, np.iinfo(pixel_type).max
    scale = (high - low) / (source_high - source_low) if source_high > source_low else 0.0
    log.info("%s: %s values rescaled onto the %s range [%g, %g]", path, pixel_type, target, low, high)
    rescaled = sitk.GetImageFromArray((low + (array - source_low) * scale).astype(np.float32))
    rescaled.CopyInformation(image)
    return rescaled


def read_text(path: Path, what: str) -> str:
    """The text of `path`: UTF-8 (a byte-order mark skipped) or UTF-16/32 with a byte-order mark; a DataError
    naming the file and the first byte that is not UTF-8 otherwise (`what` says what the file is)."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        offset = error.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        name = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise DataError(
            f"{path}: {what} is not {name} text (byte offset {offset}: {data[offset : offset + 1].hex()}); "
            "save it as UTF-8"
        ) from None


def _coordinate(path: Path, row: int, image_id: str, column: int, text: str, ndim: int) -> float:
    """Field `column` (1-based; the id is column 1) of a landmark row: NaN where empty or NaN, else a finite
    number."""
    if not text:
        return math.nan
    where = f"{path}, row {row} (id {image_id!r}), column {column} (landmark {(column - 2) // ndim + 1} "
    where += f"{'xyz'[(column - 2) % ndim]})"
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number") from None
    if math.isinf(value):
        raise DataError(f"{where}: {text!r} is infinite; a missing coordinate is an empty field or NaN")
    return value


COORDINATE_AXES = "xyz"


@dataclasses.dataclass
class LandmarkTable:
    """A landmark CSV's rows, {id: (num_landmarks, ndim) array}, and the landmark names its header row gives
    (None without a header, or where the header does not name the landmarks)."""

    landmarks: dict[str, np.ndarray]
    names: list[str] | None = None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_header_row(fields: Sequence[str]) -> bool:
    """A header row: besides its first field (`id`, or any name), every field is a non-empty non-number."""
    return len(fields) > 1 and all(field and not _is_number(field) for field in fields[1:])


def header_names(columns: Sequence[str], ndim: int) -> list[str] | None:
    """The landmark names of a header's columns after the id: `name_x,name_y[,name_z]` per landmark (also
    `name.x` or `name x`, any case), or one plain name per landmark; None where they name no landmarks."""
    columns = [column.strip() for column in columns]
    if len(columns) % ndim == 0:
        names = []
        for first in range(0, len(columns), ndim):
            stems = set()
            for axis, column in enumerate(columns[first : first + ndim]):
                if len(column) < 3 or column[-2] not in "_. " or column[-1].lower() != COORDINATE_AXES[axis]:
                    break
                stems.add(column[:-2])
            else:
                if len(stems) == 1:
                    names.append(stems.pop())
                    continue
            names = None
            break
        if names:
            return names
    return None


def read_landmarks_table(path: str | os.PathLike, num_landmarks: int | None, ndim: int) -> LandmarkTable:
    """Reads `id,x1,y1[,z1],...` rows into {id: (num_landmarks, ndim) array}, with an optional header row.

    The header, where the first non-blank row has one, names the landmarks: `id,tip_x,tip_y,notch_x,...`
    (`tip.x`, `tip x` too) or one plain name per landmark (`id,tip,notch`); other headers are skipped without
    names. A row is a header when every field after its first is a non-empty non-number. `num_landmarks`
    None takes the count from the header's names, else from the first row's columns. An empty field or NaN is
    a missing coordinate; any other field must be a finite number (an infinite one is an error, not
    "missing"). UTF-8, with or without a byte-order mark, or UTF-16/32 with one."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: landmark file does not exist")
    landmarks: dict[str, np.ndarray] = {}
    header, header_row = None, 0
    expected = None if num_landmarks is None else 1 + num_landmarks * ndim
    for row_number, line in enumerate(read_text(path, "landmark file").splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if not header_row and not landmarks and header is None and is_header_row(fields):
            header, header_row = fields[1:], row_number
            if expected is None and header_names(header, ndim) is not None:
                expected = 1 + len(header)
            continue
        if expected is None:
            if (len(fields) - 1) % ndim or len(fields) < 1 + ndim:
                raise DataError(
                    f"{path}, row {row_number} (id {fields[0]!r}): {len(fields)} columns, expected an id and "
                    f"{ndim} coordinates per landmark"
                )
            expected = len(fields)
        count = (expected - 1) // ndim
        if len(fields) != expected:
            raise DataError(
                f"{path}, row {row_number} (id {fields[0]!r}): {len(fields)} columns, expected "
                f"{expected} (id + {count} landmarks x {ndim} coordinates)"
            )
        values = np.array(
            [
                _coordinate(path, row_number, fields[0], column, fields[column - 1], ndim)
                for column in range(2, expected + 1)
            ],
            np.float64,
        )
        if fields[0] in landmarks:
            raise DataError(f"{path}, row {row_number}: id {fields[0]!r} appears twice")
        landmarks[fields[0]] = values.reshape(count, ndim)
    names = None
    if header is not None and expected is not None:
        count = (expected - 1) // ndim
        names = header_names(header, ndim)
        if names is None and header_names(header, 5 - ndim) is not None:
            raise DataError(
                f"{path}, row {header_row} (header): names {5 - ndim}D coordinates ({', '.join(header[: 5 - ndim])}), "
                f"the landmarks are read as {ndim}D"
            )
        if names is None and len(header) == count:
            names = list(header)
        elif names is None and len(header) != count * ndim:
            raise DataError(
                f"{path}, row {header_row} (header): {len(header) + 1} columns, expected {expected} (id + "
                f"{count} landmarks x {ndim} coordinates) or {count + 1} (id + one name per landmark)"
            )
        if names is not None and len(names) != count:
            raise DataError(
                f"{path}, row {header_row} (header): names {len(names)} landmarks, expected {count} "
                f"(id + {count} landmarks x {ndim} coordinates)"
            )
    return LandmarkTable(landmarks, names)


def header_dimension(path: str | os.PathLike) -> int | None:
    """2 or 3 where the landmark CSV's header row names x, y[, z] coordinates (`tip_x,tip_y,tip_z,...`), else
    None (no header, or plain names)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: landmark file does not exist")
    for line in read_text(Path(path), "landmark file").splitlines():
        if line.strip():
            fields = [field.strip() for field in line.split(",")]
            if is_header_row(fields):
                return next((ndim for ndim in (3, 2) if header_names(fields[1:], ndim) is not None), None)
            return None
    return None


def read_landmarks_csv(path: str | os.PathLike, num_landmarks: int, ndim: int) -> dict[str, np.ndarray]:
    """Reads `id,x1,y1[,z1],...` rows into {id: (num_landmarks, ndim) array}; a header row naming the
    landmarks is allowed and skipped (read_landmarks_table returns its names).

    An empty field or NaN is a missing coordinate; any other field must be a finite number (an infinite one is
    an error, not "missing"). UTF-8, with or without a byte-order mark, or UTF-16/32 with one."""
    return read_landmarks_table(path, num_landmarks, ndim).landmarks


def landmark_header(names: Sequence[str] | None, num_landmarks: int, ndim: int) -> str:
    """The header row `id,<name>_x,<name>_y[,<name>_z],...`; landmarks without names are `landmark_<k>`
    (numbered from 0)."""
    names = list(names) if names else [f"landmark_{k}" for k in range(num_landmarks)]
    return ",".join(["id"] + [f"{name}_{axis}" for name in names for axis in COORDINATE_AXES[:ndim]])


def format_landmark_row(image_id: str, coords: np.ndarray) -> str:
    """One row of the landmark CSV format; NaN for missing coordinates."""
    return ",".join([image_id] + ["NaN" if not np.isfinite(v) else f"{v:.6g}" for v in np.ravel(coords)])


def write_landmarks_csv(
    path: str | os.PathLike,
    landmarks: dict[str, np.ndarray],
    overwrite: bool = True,
    header: Sequence[str] | None = None,
) -> None:
    """Writes {id: (N, d)} in the CSV format, through a temporary file so that no half file remains; with
    `header` (the landmark names; an empty list: `landmark_<k>`) a header row first (landmark_header)."""
    text = "".join(format_landmark_row(k, v) + "\n" for k, v in landmarks.items())
    if header is not None:
        first = next(iter(landmarks.values()), None)
        count, ndim = (len(header), 2) if first is None else np.shape(first)
        text = landmark_header(header, count, ndim) + "\n" + text
    write_text_atomic(path, text, overwrite)


def read_id_list(path: str | os.PathLike) -> list[str]:
    """One id per line; blank lines and lines starting with '#' are ignored; every id must be a plain file name
    and appear once (a repeated id is an error naming both lines). Encodings as read_landmarks_csv."""
    from scn_tf.data.ids import validate_ids  # ids imports this module

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: id list does not exist")
    lines: dict[str, int] = {}
    for number, line in enumerate(read_text(path, "id list").splitlines(), start=1):
        image_id = line.strip()
        if not image_id or line.startswith("#"):
            continue
        if image_id in lines:
            raise DataError(f"{path}: id {image_id!r} appears twice, on lines {lines[image_id]} and {number}")
        lines[image_id] = number
    return validate_ids(list(lines), str(path))


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


def file_physical_points(path: str | os.PathLike, image: sitk.Image, coords: np.ndarray) -> np.ndarray:
    """Continuous pixel indices (N, d) of `image`, as read from `path`, to physical points of the file: a
    single-slice volume read as a 2D image keeps its third coordinate (the slice's position in the volume)."""
    path = Path(path)
    if image.GetDimension() != 2 or path.is_dir() or path.name.lower().endswith(PLAIN_IMAGE_SUFFIXES):
        return pixel_to_physical(image, coords)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return pixel_to_physical(image, coords)
    if reader.GetDimension() != 3:
        return pixel_to_physical(image, coords)
    matrix = np.array(reader.GetDirection()).reshape(3, 3) * np.array(reader.GetSpacing())
    indices = np.concatenate([coords, np.zeros((len(coords), 1))], axis=1)
    return np.array(reader.GetOrigin()) + indices @ matrix.T


def physical_to_pixel(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Physical points (N, d) to continuous pixel indices of `image`; NaN rows stay NaN."""
    origin = np.array(image.GetOrigin())
    matrix = np.array(image.GetDirection()).reshape(image.GetDimension(), -1) * np.array(image.GetSpacing())
    return (points - origin) @ np.linalg.inv(matrix).T
