"""Where fused slices go: PNG files, a NIfTI volume, a DICOM series (the ``--preview``
picture is drawn with the other pictures, :class:`medfuse.render.Montage`).

Every writer is a *sink*: fused slices are handed over one at a time as they leave the
network (so DICOM and PNG outputs never hold the whole volume), and nothing appears under the
requested name until ``commit``; ``abort`` (or an exception inside ``with``) removes the
temporary files. The format comes from the output suffix or ``--format``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import OutputError, UsageError
from medfuse.io.geometry import slice_plane, stack_view
from medfuse.io.images import to_uint, write_image
from medfuse.io.layout import IMAGE_SUFFIXES, NIFTI_SUFFIXES
from medfuse.io.outputs import (
    CommitOnExit,
    OutputSet,
    StagedFolder,
    check_output,
    make_staging_dir,
    remove_staging,
)
from medfuse.io.volume import Volume

OUTPUT_FORMATS = ("png", "nifti", "dicom")
GREY_SCALE = 1.0 / 65535.0


def output_format(path: Path, fmt: str | None = None) -> str:
    """``png`` (any ordinary image suffix), ``nifti`` or ``dicom`` from ``--format`` or the
    suffix; a suffix medfuse cannot write is a usage error."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if fmt is not None:
        key = fmt.strip().lower()
        key = {"nii": "nifti", "dcm": "dicom", "image": "png"}.get(key, key)
        if key not in OUTPUT_FORMATS:
            raise UsageError(f"--format {fmt!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
        if key == "nifti" and not name.endswith(NIFTI_SUFFIXES):
            raise UsageError(f"--format nifti needs an output ending in .nii or .nii.gz, not {path.name}")
        if key == "png" and suffix and suffix not in IMAGE_SUFFIXES:
            raise UsageError(
                f"--format png: {path.name} must end in one of {', '.join(IMAGE_SUFFIXES)} "
                "(or have no suffix, for a folder of slices)"
            )
        return key
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if suffix in IMAGE_SUFFIXES:
        return "png"
    if suffix == ".dcm":
        return "dicom"
    raise UsageError(
        f"cannot write {path.name}: the output suffix must be one of "
        f"{', '.join(IMAGE_SUFFIXES + NIFTI_SUFFIXES)}, .dcm (or give --format png|nifti|dicom)"
    )


class Sink(CommitOnExit):
    """Base of all writers: collect slices, then commit or abort. ``stage`` finishes the
    writing and hands the staged entries to an :class:`~medfuse.io.outputs.OutputSet`
    without renaming anything, so the caller commits them together with the record and
    the transform; ``commit`` does both for a sink on its own."""

    outputs: list[Path]

    def add(self, index: int, image: np.ndarray) -> None:
        raise NotImplementedError

    def stage(self, outputs: OutputSet) -> list[Path]:
        """Finish writing into staging and add every entry to ``outputs``; returns the
        targets (what will exist once ``outputs`` is committed)."""
        raise NotImplementedError

    def commit(self) -> list[Path]:
        together = OutputSet()
        try:
            self.outputs = self.stage(together)
            together.commit()
        except BaseException:
            together.abort()
            self.abort()
            raise
        return self.outputs


class _Staging:
    """A temporary folder beside the outputs; files move into place only on commit."""

    def __init__(self, parent: Path):
        self.dir = make_staging_dir(parent, "slices")

    def remove(self) -> None:
        remove_staging(self.dir)


class PngSink(Sink):
    """One image per slice. ``out.png`` becomes ``out_0000.png``, ``out_0001.png``...; an
    output without suffix is a folder of ``<axis>_0000.png``. A single slice is written to
    the output name itself."""

    def __init__(self, output: Path, indices: list[int], n_total: int, axis: str,
                 bit_depth: int | None, force: bool, inputs: tuple[Path, ...], single: bool,
                 grey_bit_depth: int = 16):
        self.bit_depth = bit_depth
        #: Default depth of grey slices: 16 for DICOM/NIfTI sources (their precision is
        #: worth keeping), 8 for ordinary images (the same file ``fuse`` always wrote).
        self.grey_bit_depth = grey_bit_depth
        self.force = force
        self.inputs = inputs
        self.single = single
        self.output = output
        width = max(4, len(str(max(n_total - 1, 0))))
        suffix = output.suffix.lower()
        if single:
            if suffix not in IMAGE_SUFFIXES:
                raise UsageError(f"cannot write one slice to {output.name}: give a .png name")
            self.targets = {indices[0]: output}
        elif suffix in IMAGE_SUFFIXES:
            stem = output.name[: -len(output.suffix)]
            self.targets = {i: output.with_name(f"{stem}_{i:0{width}d}{output.suffix}")
                            for i in indices}
        else:
            self.targets = {i: output / f"{axis}_{i:0{width}d}.png" for i in indices}
        for p in self.targets.values():
            check_output(p, force, inputs)
        parent = output.parent if (single or suffix in IMAGE_SUFFIXES) else output
        parent = parent if str(parent) else Path(".")
        # Folders this sink creates are removed again on abort, so a failure leaves nothing.
        self.created = [d for d in (parent, *parent.parents) if not d.exists()]
        self.staging = _Staging(parent)
        self.outputs = []

    def _depth(self, image: np.ndarray) -> int:
        if self.bit_depth is not None:
            return self.bit_depth
        return 8 if image.ndim == 3 else self.grey_bit_depth

    def add(self, index: int, image: np.ndarray) -> None:
        target = self.targets[index]
        staged = self.staging.dir / target.name
        write_image(staged, image, bit_depth=self._depth(image), force=True)

    def stage(self, outputs: OutputSet) -> list[Path]:
        targets = []
        for target in self.targets.values():
            staged = self.staging.dir / target.name
            if staged.exists():
                outputs.add(staged, target, owned=self.staging.dir)
                targets.append(target)
        if not targets:
            self.staging.remove()
        self.outputs = targets
        return targets

    def abort(self) -> None:
        self.staging.remove()
        for d in self.created:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break


class NiftiSink(Sink):
    """The fused volume on the MRI grid with the MRI's affine (RGB24 or uint16 in [0, 1])."""

    def __init__(self, output: Path, mri: Volume, axis: str, colour: bool, force: bool,
                 inputs: tuple[Path, ...]):
        from medfuse.io.nifti import allocate_output, channel_views

        check_output(output, force, inputs)
        self.output, self.mri, self.colour, self.force, self.inputs = output, mri, colour, force, inputs
        self.volume = allocate_output(mri.shape, colour)
        self.views = [stack_view(v, mri.affine, axis)[0] for v in channel_views(self.volume)]
        self.outputs = []

    def add(self, index: int, image: np.ndarray) -> None:
        if self.colour:
            rgb = to_uint(image if image.ndim == 3 else np.repeat(image[..., None], 3, -1), 8)
            for c, view in enumerate(self.views):
                view[index] = rgb[..., c]
        else:
            grey = image if image.ndim == 2 else image.mean(axis=-1)
            self.views[0][index] = to_uint(grey, 16)

    def stage(self, outputs: OutputSet) -> list[Path]:
        from medfuse.io.nifti import write_nifti

        staged = outputs.path_for(self.output)
        write_nifti(
            staged, self.volume, self.mri.affine, like=self.mri, force=False,
            inputs=self.inputs, slope=None if self.colour else GREY_SCALE,
        )
        self.outputs = [self.output]
        return self.outputs


class DicomSink(Sink):
    """A Secondary Capture series folder (or one file for a single slice) whose slices carry
    the MRI grid's positions; patient/study attributes come from the MRI when it was DICOM,
    and each slice references the DICOM inputs (MRI and ``other``) it was derived from."""

    def __init__(self, output: Path, mri: Volume, stack_affine: np.ndarray, colour: bool,
                 anonymize: bool, force: bool, inputs: tuple[Path, ...], single: bool,
                 description: str, other: Volume | None = None):
        from medfuse.io.dicom.write import SeriesTemplate

        self.output, self.single, self.force, self.inputs = output, single, force, inputs
        self.colour = colour
        self.geometry = mri.has_geometry
        self.stack_affine = stack_affine
        sources = [v.extra.get("source_series") for v in (mri, other) if v is not None]
        self.template = SeriesTemplate.create(mri.dicom, anonymize, description, sources)
        self.count = 0
        self.writer: Any = None
        self.staging: Path | None = None
        if single:
            check_output(output, force, inputs)
            parent = output.parent if str(output.parent) else Path(".")
            self.staging = make_staging_dir(parent, output.name)
        else:
            self.writer = StagedFolder(output, force, inputs, label="DICOM series")
        self.outputs = []

    def _dataset(self, index: int, image: np.ndarray) -> Any:
        from medfuse.io.dicom.write import build_dataset

        self.count += 1
        plane = slice_plane(self.stack_affine, index) if self.geometry else None
        if self.colour:
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
            return build_dataset(to_uint(rgb, 8), self.template, self.count, plane)
        grey = image if image.ndim == 2 else image.mean(axis=-1)
        return build_dataset(to_uint(grey, 16), self.template, self.count, plane,
                             window=(32767.5, 65535.0))

    def add(self, index: int, image: np.ndarray) -> None:
        ds = self._dataset(index, image)
        if self.single:
            assert self.staging is not None
            target = self.staging / self.output.name
        else:
            target = self.writer.path_for(f"IM{self.count:05d}.dcm")
        try:
            ds.save_as(target, enforce_file_format=True)
        except OSError as exc:
            raise OutputError(f"cannot write {self.output}: {exc.strerror or exc}") from exc

    def stage(self, outputs: OutputSet) -> list[Path]:
        if self.single:
            assert self.staging is not None
            staged = self.staging / self.output.name
            if not staged.exists():
                self.abort()
                return []
            outputs.add(staged, self.output, owned=self.staging)
        else:
            outputs.add(self.writer.tmp, self.writer.folder, owned=self.writer.tmp)
        self.outputs = [self.output]
        return self.outputs

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        if self.staging is not None:
            remove_staging(self.staging)


__all__ = [
    "DicomSink",
    "NiftiSink",
    "OUTPUT_FORMATS",
    "PngSink",
    "Sink",
    "output_format",
]
