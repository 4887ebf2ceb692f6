"""Property-based tests (Hypothesis): whatever bytes a reader is given, under whatever name,
it returns a usable Volume (finite affine, non-empty grid) or raises a ``MedfuseError``,
never any other exception; ``read_pairs_csv`` returns pairs and problems or raises a
``MedfuseError``. Derandomized and bounded, so every run tries the same examples.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import hostile_files as hf
from helpers.hostile_cli import memory_guard
from medfuse.errors import MedfuseError
from medfuse.io.layout import Pair, read_pairs_csv
from medfuse.io.read import read
from medfuse.io.volume import Volume

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

SUFFIXES = (".png", ".jpg", ".tif", ".bmp", ".nii", ".nii.gz", ".dcm", "")


@cache
def _valid(suffix: str) -> bytes:
    return {
        ".png": lambda: hf.image_bytes("png", True, 32),
        ".jpg": lambda: hf.image_bytes("jpeg", False, 32),
        ".tif": lambda: hf.image_bytes("tiff", True, 32),
        ".bmp": lambda: hf.image_bytes("bmp", False, 32),
        ".nii": lambda: hf.nifti_bytes(hf.nifti_volume((8, 8, 3))),
        ".nii.gz": lambda: hf.nifti_bytes(hf.nifti_volume((8, 8, 3)), gz=True),
        ".dcm": lambda: hf.dicom_bytes(),
        "": lambda: hf.dicom_bytes(),
    }[suffix]()


@contextlib.contextmanager
def _file(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="medfuse-prop-") as d:
        p = Path(d) / f"input{suffix}"
        p.write_bytes(data)
        yield p


def _check_read(path: Path) -> None:
    with memory_guard(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            vol = read(path)
        except MedfuseError:
            return
    assert isinstance(vol, Volume)
    assert vol.data.ndim in (3, 4) and min(vol.shape) >= 1
    assert vol.affine.shape == (4, 4) and np.isfinite(vol.affine).all()
    assert np.isfinite(vol.slope) and np.isfinite(vol.inter)


@SETTINGS
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=4096))
def test_read_arbitrary_bytes(suffix: str, data: bytes) -> None:
    with _file(data, suffix) as p:
        _check_read(p)


MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM",
          b"\x1f\x8b\x08\x00", b"\x00" * 128 + b"DICM", b"\x5c\x01\x00\x00")


@SETTINGS
@given(suffix=st.sampled_from(SUFFIXES), magic=st.sampled_from(MAGICS),
       tail=st.binary(max_size=2048))
def test_read_a_valid_signature_then_garbage(suffix: str, magic: bytes, tail: bytes) -> None:
    with _file(magic + tail, suffix) as p:
        _check_read(p)


def _mutation() -> st.SearchStrategy[tuple[str, int, bytes]]:
    return st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]),
                     st.integers(min_value=0, max_value=1 << 20),
                     st.binary(min_size=1, max_size=16))


def _mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    b = bytearray(data)
    for kind, pos, chunk in edits:
        if not b:
            break
        i = pos % len(b)
        if kind == "flip":
            b[i] ^= chunk[0] or 0x01
        elif kind == "truncate":
            del b[i:]
        elif kind == "insert":
            b[i:i] = chunk
        elif kind == "delete":
            del b[i : i + len(chunk)]
        else:
            b[i : i + len(chunk)] = chunk
    return bytes(b)


@SETTINGS
@given(suffix=st.sampled_from(SUFFIXES),
       edits=st.lists(_mutation(), min_size=1, max_size=4))
def test_read_a_mutated_valid_file(suffix: str, edits: list[tuple[str, int, bytes]]) -> None:
    with _file(_mutate(_valid(suffix), edits), suffix) as p:
        _check_read(p)


@SETTINGS
@given(suffix=st.sampled_from(SUFFIXES),
       edits=st.lists(st.tuples(st.sampled_from(["flip", "overwrite"]),
                                st.integers(min_value=0, max_value=700),
                                st.binary(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_read_a_valid_file_with_a_mutated_header(suffix: str,
                                                 edits: list[tuple[str, int, bytes]]) -> None:
    """Edits within the first 700 bytes, where every format keeps its header."""
    with _file(_mutate(_valid(suffix), edits), suffix) as p:
        _check_read(p)


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(min_value=0, max_value=2),
       edits=st.lists(_mutation(), min_size=1, max_size=3))
def test_read_a_series_with_a_mutated_member(which: int,
                                             edits: list[tuple[str, int, bytes]]) -> None:
    with tempfile.TemporaryDirectory(prefix="medfuse-prop-") as d:
        series = hf.dicom_series(Path(d) / "s", 3)
        f = sorted(series.iterdir())[which]
        f.write_bytes(_mutate(f.read_bytes(), edits))
        _check_read(series)


CSV_TEXT = st.text(alphabet=st.sampled_from(list("mriothe,\"\n\r\t ./\\~:x\x00\ufeffé日")),
                   max_size=300)


@SETTINGS
@given(header=st.sampled_from(["mri,other", "mri,other,out", "\ufeffmri,other,out", "", "a,b",
                               "MRI , OTHER"]),
       body=CSV_TEXT)
def test_read_pairs_csv_text(header: str, body: str) -> None:
    with tempfile.TemporaryDirectory(prefix="medfuse-prop-") as d:
        p = Path(d) / "pairs.csv"
        p.write_text(header + "\n" + body, encoding="utf-8")
        _check_pairs(p, Path(d))


@SETTINGS
@given(data=st.binary(max_size=1024))
def test_read_pairs_csv_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="medfuse-prop-") as d:
        p = Path(d) / "pairs.csv"
        p.write_bytes(b"mri,other,out\n" + data)
        _check_pairs(p, Path(d))


def _check_pairs(path: Path, base: Path) -> None:
    try:
        pairs, problems = read_pairs_csv(path, base)
    except MedfuseError:
        return
    assert all(isinstance(x, Pair) for x in pairs)
    assert all(isinstance(e, str) and isinstance(r, str) for e, r in problems)
    for x in pairs:  # an accepted out never leaves the output folder
        if x.out is not None:
            assert not x.out.startswith(("/", "~")) and ".." not in Path(x.out).parts
            assert not any(ord(c) < 32 for c in x.out)
