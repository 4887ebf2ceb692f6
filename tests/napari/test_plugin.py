"""The napari plugin driven as a user would, under an offscreen Qt: open a generated study
with the reader, fuse it through the Fuse widget, add the masks, save the fused layer.
The fused layer must equal fuse_volume on the same inputs and lie on the MRI's affine.

The widgets are Qt widgets (magicgui) working on a napari ``ViewerModel``: the viewer
without its OpenGL canvas, which Qt's offscreen platform cannot give. The full viewer
(napari's ``make_napari_viewer``) is tried once and skipped where no OpenGL is available."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="the napari extra is not installed")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from helpers.engines import MeanEngine  # noqa: E402
from medfuse import fuse_volume, read  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from medfuse.studies import Grid, generate_study

    return generate_study("pet", tmp_path_factory.mktemp("napari") / "s", resolution=6.0,
                          anatomy="phantom", grid=Grid((8.0, 8.0, 8.0), "LPS"),
                          formats=("nifti", "dicom"), noise=False, blur=False)


def test_manifest_is_valid() -> None:
    from importlib import resources

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(
        str(resources.files("medfuse.napari").joinpath("napari.yaml")))
    assert manifest.name == "medfuse"
    assert {w.display_name for w in manifest.contributions.widgets} == {"Fuse", "Masks"}


def _open(viewer, path: Path):  # type: ignore[no-untyped-def]
    from medfuse.napari.reader import napari_get_reader

    reader = napari_get_reader(str(path))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image"
    return viewer.add_image(data, **kwargs)


@pytest.fixture
def make_viewer(qapp):  # type: ignore[no-untyped-def]
    from napari.components import ViewerModel

    return ViewerModel


def test_reader_places_layers_in_world_space(make_viewer, study) -> None:  # type: ignore[no-untyped-def]
    from medfuse.napari.reader import napari_get_reader

    viewer = make_viewer()
    mri = _open(viewer, study.path("mri"))
    pet = _open(viewer, study.path("other_dicom"))
    np.testing.assert_allclose(mri.affine.affine_matrix, read(study.path("mri")).affine)
    np.testing.assert_allclose(pet.affine.affine_matrix, read(study.path("other_dicom")).affine)
    assert pet.metadata["units"] == "Bq/ml" and mri.metadata["voxel_mm"] == [6.0, 6.0, 6.0]
    assert napari_get_reader(str(study.directory / "study.json")) is None


def test_fuse_widget_equals_fuse_volume(make_viewer, study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from medfuse.napari.widgets import FuseWidget, MasksWidget
    from medfuse.napari.writer import write_fused

    viewer = make_viewer()
    mri = _open(viewer, study.path("mri"))
    pet = _open(viewer, study.path("other_dicom"))
    widget = FuseWidget(viewer, engine_loader=MeanEngine)
    widget.mri.value, widget.other.value = mri, pet
    widget.modality.value = "pet"
    widget.window.value = "SUV 0 to 8"
    widget.run(blocking=True)
    fused = viewer.layers[-1]
    expected = fuse_volume(read(study.path("mri")), read(study.path("other_dicom")), MeanEngine(),
                           modality="pet", window="4,8")
    assert fused.rgb
    np.testing.assert_array_equal(np.asarray(fused.data), expected.data)
    np.testing.assert_allclose(fused.affine.affine_matrix, mri.affine.affine_matrix)
    assert fused.metadata["medfuse_record"]["decisions"]["other_window"]["suv"]["high"] == 8.0

    masks = MasksWidget(viewer, engine_loader=MeanEngine)
    masks.mri.value, masks.other.value = mri, pet
    masks.run(blocking=True)
    labels = [lay for lay in viewer.layers if isinstance(lay, napari.layers.Labels)]
    assert len(labels) == 2
    for lay in labels:
        assert lay.data.shape == mri.data.shape and set(np.unique(lay.data)) <= {1, 2}

    written = write_fused(str(tmp_path / "fused.nii.gz"), fused.data, fused.as_layer_data_tuple()[1])
    np.testing.assert_array_equal(read(written[0]).data, expected.data)
    from medfuse.provenance import record_path

    assert Path(written[1]) == record_path(Path(written[0])) and Path(written[1]).exists()
    dicom = write_fused(str(tmp_path / "fused-series.dcm"), fused.data, fused.as_layer_data_tuple()[1])
    back = read(dicom[0])
    assert back.data.shape == expected.data.shape


def test_fuse_widget_runs_in_a_worker(make_viewer, qtbot, study) -> None:  # type: ignore[no-untyped-def]
    from medfuse.napari.widgets import FuseWidget

    viewer = make_viewer()
    mri = _open(viewer, study.path("mri"))
    pet = _open(viewer, study.path("other"))
    widget = FuseWidget(viewer, engine_loader=MeanEngine)
    widget.mri.value, widget.other.value = mri, pet
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    assert len(viewer.layers) == 3 and viewer.layers[-1].rgb


def _opengl() -> bool:
    from qtpy.QtGui import QOffscreenSurface, QOpenGLContext

    ctx = QOpenGLContext()
    if not ctx.create():
        return False
    surface = QOffscreenSurface()
    surface.create()
    return bool(ctx.makeCurrent(surface))


def test_full_viewer_docks_the_widget(qapp, request, study) -> None:  # type: ignore[no-untyped-def]
    from medfuse.napari.widgets import FuseWidget

    if not _opengl():
        pytest.skip("no OpenGL context under this Qt platform: the full viewer cannot draw")
    viewer = request.getfixturevalue("make_napari_viewer")()
    _open(viewer, study.path("mri"))
    _open(viewer, study.path("other"))
    widget = FuseWidget(viewer, engine_loader=MeanEngine)
    viewer.window.add_dock_widget(widget, name="Fuse")
    widget.mri.value, widget.other.value = viewer.layers[0], viewer.layers[1]
    widget.modality.value = "pet"
    widget.run(blocking=True)
    assert viewer.layers[-1].rgb
