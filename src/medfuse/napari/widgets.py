"""The Fuse and Masks widgets: the CLI's choices as controls, the work in a worker thread.

Both take their inputs from image layers; a layer opened with medfuse's reader carries the
:class:`~medfuse.io.volume.Volume` it was read as (DICOM facts such as SUV included), any
other image layer becomes a Volume from its data and affine. The fused volume is added as an
RGB layer with the MRI's affine, so it lies on its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton

from medfuse.colour import GAMUT_MAPS
from medfuse.io.volume import Volume
from medfuse.prepare.colormaps import COLORMAPS, NO_COLORMAP
from medfuse.registration import METHODS

AUTO = "auto"
#: Window choices for the other image; for a PET in SUV the numbers are SUV.
WINDOWS = {"default (PET: SUV 0 to 12)": "", "SUV 0 to 5": "2.5,5", "SUV 0 to 8": "4,8",
           "SUV 0 to 20": "10,20", "CT brain": "brain", "CT soft tissue": "soft-tissue",
           "CT bone": "bone"}


def layer_volume(layer: Any) -> Volume:
    """The Volume behind an image layer."""
    vol = layer.metadata.get("medfuse_volume") if hasattr(layer, "metadata") else None
    if isinstance(vol, Volume):
        return vol
    data = np.asarray(layer.data)
    return Volume(data=data, affine=np.asarray(layer.affine.affine_matrix, np.float64),
                  format="nifti", description=str(layer.name))


def _image_layers(widget: Any) -> list[Any]:
    viewer = getattr(widget, "viewer", None)
    if viewer is None:
        return []
    from napari.layers import Image

    return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, Image)]


class _PairWidget(Container):
    """MRI and other layer pickers, a status line, a run button and the worker."""

    title = ""

    def __init__(self, viewer: Any, engine_loader: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.viewer = viewer
        self.engine_loader = engine_loader or _default_engine
        self.mri = ComboBox(label="MRI", choices=lambda w: _image_layers(self))
        self.other = ComboBox(label="CT / PET / SPECT", choices=lambda w: _image_layers(self))
        self.modality = ComboBox(label="modality", choices=[AUTO, "ct", "pet", "spect"], value=AUTO)
        self.button = PushButton(text=self.title)
        self.status = Label(value="")
        self.button.changed.connect(lambda: self.run())
        self.worker: Any = None
        self.extend([self.mri, self.other, self.modality])

    def _finish(self) -> None:
        self.extend([self.button, self.status])
        viewer = self.viewer
        if viewer is not None:
            viewer.layers.events.inserted.connect(lambda e: self.reset_choices())
            viewer.layers.events.removed.connect(lambda e: self.reset_choices())

    def options(self) -> dict[str, Any]:
        mod = self.modality.value
        return {"modality": None if mod == AUTO else mod}

    def compute(self, mri: Volume, other: Volume, engine: Any, options: dict[str, Any],
                progress: Callable[[int, int], None]) -> Any:
        raise NotImplementedError

    def add_result(self, result: Any, mri: Any) -> None:
        raise NotImplementedError

    def run(self, blocking: bool = False) -> Any:
        """Start the work in a worker thread (``blocking``: in this thread, and return the
        result: for scripts and tests)."""
        mri_layer, other_layer = self.mri.value, self.other.value
        if mri_layer is None or other_layer is None:
            self.status.value = "choose an MRI layer and a second layer"
            return None
        mri, other = layer_volume(mri_layer), layer_volume(other_layer)
        options = self.options()
        self.status.value = "working..."

        def work(progress: Callable[[int, int], None] = lambda d, t: None) -> Any:
            return self.compute(mri, other, self.engine_loader(), options, progress)

        if blocking:
            result = work()
            self.add_result(result, mri_layer)
            return result
        from napari.qt.threading import thread_worker

        def generator() -> Any:
            done: list[tuple[int, int]] = []
            result = work(lambda d, t: done.append((d, t)))
            yield done[-1] if done else (1, 1)
            return result

        worker = thread_worker(generator)()
        worker.yielded.connect(lambda dt: setattr(self.status, "value", f"{dt[0]}/{dt[1]} slices"))
        worker.returned.connect(lambda result: self.add_result(result, mri_layer))
        worker.errored.connect(lambda exc: setattr(self.status, "value", f"failed: {exc}"))
        self.worker = worker
        worker.start()
        return worker


def _default_engine() -> Any:
    from medfuse.engine import load_model

    return load_model()


class FuseWidget(_PairWidget):
    """Fuse two layers as ``medfuse fuse`` would, with its choices."""

    title = "Fuse"

    def __init__(self, viewer: Any, engine_loader: Callable[[], Any] | None = None) -> None:
        super().__init__(viewer, engine_loader)
        self.window = ComboBox(label="window", choices=list(WINDOWS), value=next(iter(WINDOWS)))
        self.colormap = ComboBox(label="colour map", choices=[AUTO, *COLORMAPS, NO_COLORMAP],
                                 value=AUTO)
        self.gamut_map = ComboBox(label="gamut map", choices=list(GAMUT_MAPS), value=GAMUT_MAPS[0])
        self.floor = LineEdit(label="floor", value="")
        self.floor.tooltip = "transparency floor in the window's units; empty: default; none: off"
        self.register = ComboBox(label="registration", choices=list(METHODS), value="none")
        self.extend([self.window, self.colormap, self.gamut_map, self.floor, self.register])
        self._finish()

    def options(self) -> dict[str, Any]:
        cmap = self.colormap.value
        return {**super().options(), "window": WINDOWS[self.window.value] or None,
                "colormap": None if cmap == AUTO else cmap, "gamut_map": self.gamut_map.value,
                "floor": self.floor.value.strip() or None,
                "register": None if self.register.value == "none" else self.register.value}

    def compute(self, mri: Volume, other: Volume, engine: Any, options: dict[str, Any],
                progress: Callable[[int, int], None]) -> Volume:
        from medfuse.volume_fusion import fuse_volume

        return fuse_volume(mri, other, engine, progress=progress, **options)

    def add_result(self, result: Volume, mri_layer: Any) -> None:
        from medfuse.napari.reader import layer_kwargs

        kwargs = layer_kwargs(result, f"fused {mri_layer.name}")
        kwargs["metadata"]["medfuse_record"] = {
            "decisions": result.extra.get("plan"), "warnings": result.extra.get("warnings"),
            "summary": result.extra.get("summary"), "mri": mri_layer.name,
            "other": self.other.value.name if self.other.value is not None else None}
        kwargs.pop("rgb", None)
        self.viewer.add_image(result.data, rgb=result.is_rgb, **kwargs)
        warned = result.extra.get("warnings") or []
        self.status.value = "fused" + (f"; {len(warned)} warning(s)" if warned else "")


class MasksWidget(_PairWidget):
    """GeSeNet's principal (1) and redundant (2) regions of each branch as labels layers."""

    title = "Masks"

    def __init__(self, viewer: Any, engine_loader: Callable[[], Any] | None = None) -> None:
        super().__init__(viewer, engine_loader)
        self._finish()

    def compute(self, mri: Volume, other: Volume, engine: Any, options: dict[str, Any],
                progress: Callable[[int, int], None]) -> tuple[np.ndarray, np.ndarray]:
        from medfuse.volume_fusion import mask_volumes

        return mask_volumes(mri, other, engine, **options)

    def add_result(self, result: tuple[np.ndarray, np.ndarray], mri_layer: Any) -> None:
        affine = np.asarray(mri_layer.affine.affine_matrix)
        for branch, mask in zip(("MRI", "other"), result):
            self.viewer.add_labels(mask, name=f"{branch} branch: 1 principal, 2 redundant",
                                   affine=affine, opacity=0.4)
        self.status.value = "masks added"


__all__ = ["FuseWidget", "MasksWidget", "WINDOWS", "layer_volume"]
