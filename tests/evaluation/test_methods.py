"""medfuse.evaluation.methods: method specs, runners and folders of fused images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.engines import MeanEngine
from helpers.eval_data import blob_image, save
from medfuse.errors import UsageError
from medfuse.evaluation.methods import (
    FusedImages,
    MethodSpec,
    check_unique,
    fused_folder,
    load_runners,
    parse_fused,
    parse_method,
    slice_file_name,
)
from medfuse.io.layout import Task
from medfuse.prepare.pair import prepare_pair


def test_parse_method(random_weights: Path) -> None:
    assert parse_method("average").label == "average"
    assert parse_method("Guided").kind == "gff"
    m = parse_method(f"mine=gesenet:{random_weights}")
    assert (m.label, m.kind, m.path) == ("mine", "gesenet", random_weights)
    assert parse_method(f"gesenet:{random_weights}").label == "gesenet-random"
    assert parse_method("gesenet").path is None
    with pytest.raises(UsageError, match="not found"):
        parse_method("gesenet:/no/such.pth")
    with pytest.raises(UsageError, match="unknown fusion rule"):
        parse_method("wavelet")
    with pytest.raises(UsageError, match="only gesenet"):
        parse_method("average:x")
    with pytest.raises(UsageError, match="give a weights path"):
        parse_method("gesenet:")
    with pytest.raises(UsageError, match="empty method"):
        parse_method("x=")


def test_parse_fused_and_labels(tmp_path: Path) -> None:
    assert parse_fused(f"x={tmp_path}").label == "x"
    assert parse_fused(str(tmp_path)).label == tmp_path.name
    odd = tmp_path / "a b"
    odd.mkdir()
    assert parse_fused(str(odd)).label == "fused"  # a folder name that cannot be a label
    with pytest.raises(UsageError, match="not found"):
        parse_fused(str(tmp_path / "missing"))
    spaced = tmp_path / "my weights.pt"
    spaced.write_bytes(b"")
    with pytest.raises(UsageError, match="letters, digits"):  # label from the file name
        parse_method(f"gesenet:{spaced}")
    assert parse_method(f"mine=gesenet:{spaced}").label == "mine"


def test_check_unique() -> None:
    check_unique([MethodSpec("a", "average"), MethodSpec("b", "max")])
    with pytest.raises(UsageError, match="labelled 'a'"):
        check_unique([MethodSpec("a", "average"), MethodSpec("a", "max")])
    with pytest.raises(UsageError, match="at least one --method"):
        check_unique([])


def test_runners_treat_rules_and_networks_alike() -> None:
    """A rule and a network take the same prepared pairs and return the same kind of
    image; with an averaging network both columns are identical."""
    mri = blob_image(1) / 255.0
    pet = blob_image(2, colour=True) / 255.0
    pairs = [prepare_pair(mri, pet, modality="pet"), prepare_pair(mri, pet[..., 0], modality="ct")]
    specs = [MethodSpec("average", "average"), MethodSpec("net", "gesenet")]
    engine = MeanEngine()
    runners = load_runners(specs, engines={"net": engine})
    assert set(runners) == {"average", "net"}
    assert runners["net"].description.startswith("GeSeNet, weights None")
    assert runners["average"].description == "pixel average (A + B) / 2"
    rule, net = runners["average"].fuse(pairs), runners["net"].fuse(pairs)
    assert [im.shape for im in rule] == [(40, 40, 3), (40, 40)]
    for a, b in zip(rule, net):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert engine.calls == [2]  # one network call for both same-sized pairs
    assert load_runners([MethodSpec("f", "fused", Path("."))]) == {}


def test_fused_folder_layouts(tmp_path: Path) -> None:
    task = Task("MRI_CT", tmp_path, "ct", [])
    spec = MethodSpec("f", "fused", tmp_path / "f")
    (tmp_path / "f").mkdir()
    assert fused_folder(spec, task, 1, None) == tmp_path / "f"
    with pytest.raises(UsageError, match="one folder per task"):
        fused_folder(spec, task, 2, None)
    (tmp_path / "f" / "MRI_CT" / "val").mkdir(parents=True)
    assert fused_folder(spec, task, 2, None) == tmp_path / "f" / "MRI_CT"
    assert fused_folder(spec, task, 2, "val") == tmp_path / "f" / "MRI_CT" / "val"


def test_fused_images_locate(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    save(folder / "101.png", blob_image(1))
    save(folder / "102.png", blob_image(2))
    save(folder / "102.jpg", blob_image(2))  # two files for one name: refused, not guessed
    save(folder / "s1" / "axial_0003.png", blob_image(3))
    (folder / "notes.txt").write_text("not an image")
    spec = MethodSpec("f", "fused", folder)
    found = FusedImages.scan(spec, folder)
    assert found.locate("101") == (folder / "101.png", "")
    path, why = found.locate("102")
    assert path is None and "several inputs share this name" in why
    path, why = found.locate("103")
    assert path is None and "no fused image named 103.*" in why
    assert found.locate("s1", "axial_0003.png") == (folder / "s1" / "axial_0003.png", "")
    path, why = found.locate("s1", "axial_0004.png")
    assert path is None and "s1/axial_0004.png" in why
    path, why = found.locate("101", "axial_0003.png")
    assert path is None and "no folder 101/" in why
    path, why = found.locate("s1")  # a folder is not an image
    assert path is None


def test_slice_file_name_matches_the_png_writer() -> None:
    assert slice_file_name("axial", 7, 8) == "axial_0007.png"
    assert slice_file_name("coronal", 12, 20000) == "coronal_00012.png"
