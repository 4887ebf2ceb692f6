"""Family 1 and 2: truncated and corrupt files of every format medfuse reads, and files whose
content is not what their name says.

Decisions (docs/reliability.md): a file cut short anywhere in its pixel data is refused
(exit 1); a flipped byte is refused where the format can tell (PNG chunk CRCs, the gzip
CRC of ``.nii.gz``) and fused as stored where it cannot (JPEG, TIFF, BMP, ``.nii``, DICOM
carry no checksum); an ordinary image named with another image suffix is read by its
content; anything else whose content is not its suffix is refused (exit 1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import hostile_files as hf
from helpers.hostile_cli import Box, invoke

#: Every single-file format, as (valid bytes, suffix).
FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "png-grey": (lambda: hf.image_bytes("png"), ".png"),
    "png-rgb": (lambda: hf.image_bytes("png", colour=True), ".png"),
    "jpeg-grey": (lambda: hf.image_bytes("jpeg"), ".jpg"),
    "jpeg-rgb": (lambda: hf.image_bytes("jpeg", colour=True), ".jpeg"),
    "tiff-grey": (lambda: hf.image_bytes("tiff"), ".tif"),
    "tiff-rgb": (lambda: hf.image_bytes("tiff", colour=True), ".tiff"),
    "bmp-grey": (lambda: hf.image_bytes("bmp"), ".bmp"),
    "bmp-rgb": (lambda: hf.image_bytes("bmp", colour=True), ".bmp"),
    "nii": (lambda: hf.nifti_bytes(), ".nii"),
    "nii.gz": (lambda: hf.nifti_bytes(gz=True), ".nii.gz"),
    "dcm": (lambda: hf.dicom_bytes(), ".dcm"),
    "dcm-multiframe": (lambda: hf.dicom_multiframe_bytes(4), ".dcm"),
}
#: Where a file is cut: nothing left, inside the header, and inside the data.
CUTS = (0.0, 0.02, 0.5, 0.95)
#: Formats that carry a checksum over their data (a flipped byte is detectable).
CHECKED = {"png-grey", "png-rgb", "nii.gz"}


def _pair(box: Box, fmt: str, hostile: bytes, as_other: bool | None = None
          ) -> tuple[Path, Path, Path]:
    """(mri, other, output): the hostile file and a valid partner of the same format; a
    colour file plays the PET (an MRI must be grey)."""
    make, suffix = FORMATS[fmt]
    if as_other is None:
        as_other = fmt.endswith("-rgb")
    partner = fmt.replace("-rgb", "-grey") if as_other else fmt
    good = box.put(f"good{suffix}", FORMATS[partner][0]())
    bad = box.put(f"bad{suffix}", hostile)
    out = box.out / ("fused.nii.gz" if fmt.startswith("nii") or fmt == "dcm-multiframe"
                     else "fused.png")
    return (good, bad, out) if as_other else (bad, good, out)


def _run(box: Box, mri: Path, other: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    """``fuse``; a DICOM second input (an MR template) is declared CT, as the CLI asks."""
    box.snap()
    if other.suffix == ".dcm" or other.is_dir() or other.suffix == "":
        extra = ("--modality", "ct", *extra)
    return invoke("fuse", mri, other, "-o", out, *extra)


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_truncated_file_is_refused(box: Box, fmt: str, cut: float) -> None:
    data = FORMATS[fmt][0]()
    mri, other, out = _pair(box, fmt, hf.truncate(data, cut))
    box.refused(_run(box, mri, other, out), 1, absent=(box.out,))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_truncated_second_input_is_refused(box: Box, fmt: str) -> None:
    data = FORMATS[fmt][0]()
    mri, other, out = _pair(box, fmt, hf.truncate(data, 0.6), as_other=True)
    line = box.refused(_run(box, mri, other, out), 1, absent=(box.out,))
    assert "bad" in line  # the message names the broken file


@pytest.mark.parametrize("where", (0.55, 0.9))
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_flipped_data_byte(box: Box, fmt: str, where: float) -> None:
    """Refused where the format has a checksum; fused as stored where it has none."""
    data = FORMATS[fmt][0]()
    mri, other, out = _pair(box, fmt, hf.flip(data, int(len(data) * where)))
    res = _run(box, mri, other, out)
    if fmt in CHECKED:
        box.refused(res, 1, absent=(box.out,))
    else:
        box.accepted(res, (out,))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_overwritten_block(box: Box, fmt: str) -> None:
    data = FORMATS[fmt][0]()
    mri, other, out = _pair(box, fmt, hf.splat(data, int(len(data) * 0.7), 24))
    res = _run(box, mri, other, out)
    if fmt in CHECKED:
        box.refused(res, 1, absent=(box.out,))
    else:
        box.accepted(res, (out,))


#: The first bytes that say what a file is (flipping one makes it something else).
MAGIC = {"png-grey": 1, "png-rgb": 0, "jpeg-grey": 1, "jpeg-rgb": 0, "tiff-grey": 0,
         "tiff-rgb": 2, "bmp-grey": 0, "bmp-rgb": 1, "nii": 344, "nii.gz": 0, "dcm": 128,
         "dcm-multiframe": 130}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_broken_signature_is_refused(box: Box, fmt: str) -> None:
    data = FORMATS[fmt][0]()
    mri, other, out = _pair(box, fmt, hf.flip(data, MAGIC[fmt], 0x5A))
    box.refused(_run(box, mri, other, out), 1, absent=(box.out,))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_zero_filled_file_is_refused(box: Box, fmt: str) -> None:
    data = FORMATS[fmt][0]()
    mri, other, out = _pair(box, fmt, b"\x00" * len(data))
    box.refused(_run(box, mri, other, out), 1, absent=(box.out,))


# -- content that is not its suffix ---------------------------------------------------------

#: Content kinds, by what they really are.
CONTENT: dict[str, Callable[[], bytes]] = {
    "png": lambda: hf.image_bytes("png"),
    "jpeg": lambda: hf.image_bytes("jpeg"),
    "tiff": lambda: hf.image_bytes("tiff"),
    "bmp": lambda: hf.image_bytes("bmp"),
    "nii": lambda: hf.nifti_bytes(),
    "nii.gz": lambda: hf.nifti_bytes(gz=True),
    "dcm": lambda: hf.dicom_bytes(),
    "text": lambda: b"mri,other\na.png,b.png\n",
    "html": lambda: b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n",
    "zip": lambda: b"PK\x03\x04" + b"\x00" * 60,
    "gzip-text": lambda: __import__("gzip").compress(b"hello " * 100, mtime=0),
    "pdf": lambda: b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
    "random": lambda: bytes(__import__("random").Random(7).randbytes(5000)),
}
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "bmp": ".bmp", "nii": ".nii",
            "nii.gz": ".nii.gz", "dcm": ".dcm"}
IMAGE_KINDS = {"png", "jpeg", "tiff", "bmp"}

def _misnamed() -> list[tuple[str, str]]:
    """Every content under three names it is not: one from each other family (another
    image suffix, NIfTI, DICOM), rotating so that every suffix is used."""
    names = list(SUFFIXES)
    out = []
    for i, content in enumerate(CONTENT):
        others = [n for n in names if n != content]
        picks = {others[i % len(others)], others[(i + 3) % len(others)],
                 others[(i + 5) % len(others)]}
        if content in IMAGE_KINDS:  # and always an image under another image suffix
            picks.add(next(n for n in ("png", "jpeg", "tiff", "bmp") if n != content))
        out += [(content, n) for n in sorted(picks)]
    return out


MISNAMED = _misnamed()


@pytest.mark.parametrize(("content", "named"), MISNAMED)
def test_content_is_not_its_suffix(box: Box, content: str, named: str) -> None:
    """An ordinary image under another image suffix is read by content (fused, exit 0);
    every other mismatch is refused with one line (exit 1)."""
    bad = box.put(f"bad{SUFFIXES[named]}", CONTENT[content]())
    good = box.png("good.png", seed=1)  # not bad's own pixels: one image twice is refused
    out = box.out / "fused.png"
    res = _run(box, bad, good, out)
    if content in IMAGE_KINDS and named in IMAGE_KINDS:
        box.accepted(res, (out,))
    else:
        box.refused(res, 1, absent=(box.out,))


@pytest.mark.parametrize("content", ["text", "random", "png", "nii"])
def test_unknown_suffix_is_refused(box: Box, content: str) -> None:
    bad = box.put("scan.xyz", CONTENT[content]())
    good = box.png("good.png")
    box.refused(_run(box, bad, good, box.out / "f.png"), 1, "not a format medfuse reads",
                absent=(box.out,))


def test_dicom_without_suffix_is_read_by_signature(box: Box) -> None:
    mri = box.put("IM0001", hf.dicom_bytes())
    other = box.put("IM0002", hf.dicom_bytes())
    out = box.out / "f.png"
    box.accepted(_run(box, mri, other, out), (out,))


# -- DICOM series with broken members -------------------------------------------------------


def _series(box: Box, name: str, n: int = 5) -> Path:
    return hf.dicom_series(box.inp / name, n)


@pytest.mark.parametrize("which", [0, 2, 4])
@pytest.mark.parametrize("cut", [0.02, 0.3, 0.9])
def test_series_with_a_truncated_member_is_refused(box: Box, which: int, cut: float) -> None:
    """A file of the series cut short (header or pixels, first, middle or last slice) never
    yields a volume with a slice silently missing."""
    mri = _series(box, "mri")
    other = _series(box, "ct")
    f = sorted(mri.iterdir())[which]
    f.write_bytes(hf.truncate(f.read_bytes(), cut))
    box.refused(_run(box, mri, other, box.out / "f.nii.gz"), 1, absent=(box.out,))


@pytest.mark.parametrize("which", [0, 4])
def test_series_with_a_corrupt_member_header_is_refused(box: Box, which: int) -> None:
    mri = _series(box, "mri")
    other = _series(box, "ct")
    f = sorted(mri.iterdir())[which]
    data = f.read_bytes()
    f.write_bytes(hf.splat(data, 132, 200))  # the file meta group and first elements
    box.refused(_run(box, mri, other, box.out / "f.nii.gz"), 1, absent=(box.out,))


def test_series_tolerates_non_dicom_files(box: Box) -> None:
    """Notes, thumbnails, hidden files and a DICOMDIR beside the slices are skipped."""
    mri = _series(box, "mri")
    other = _series(box, "ct")
    (mri / "notes.txt").write_text("scanned on a Tuesday")
    (mri / "thumb.png").write_bytes(hf.image_bytes("png", size=16))
    (mri / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (mri / "DICOMDIR").write_bytes(b"\x00" * 200)
    out = box.out / "f.nii.gz"
    box.accepted(_run(box, mri, other, out), (out,))


def test_empty_series_folder_is_refused(box: Box) -> None:
    mri = box.inp / "mri"
    mri.mkdir()
    (mri / "readme.txt").write_text("nothing")
    other = _series(box, "ct")
    box.refused(_run(box, mri, other, box.out / "f.nii.gz"), 1, "no DICOM images",
                absent=(box.out,))
