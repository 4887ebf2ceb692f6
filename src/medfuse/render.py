"""Pictures made from images: mask overlays, slice montages (and the ``--preview`` writer,
:class:`Montage`) and labelled comparison grids.

One module draws every picture medfuse writes besides the fused images themselves (the
``masks`` overlays, ``--preview`` montages, the example grids of ``eval --report`` and the
figures in ``docs/``), so a montage looks the same whichever command made it and a change
of style happens in one place.

Conventions, as everywhere in medfuse: an image is grey ``(H, W)`` or RGB ``(H, W, 3)``;
floating-point images are in [0, 1]; ``uint8`` tiles (already quantised 0..255 values, as
the evaluation keeps them) are accepted as they are. Every function returns float32 in
[0, 1], ready for :func:`medfuse.io.images.write_image`, which quantises exactly as the
fused images are quantised. Only NumPy, OpenCV and Pillow are needed: no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import UsageError
from medfuse.io.images import write_image
from medfuse.io.layout import IMAGE_SUFFIXES
from medfuse.io.outputs import check_output

#: Colour of the overlay tint (red, as in the GeSeNet paper's mask figure).
OVERLAY_TINT = (1.0, 0.15, 0.15)
#: Opacity of the tint where the mask is 1.
OVERLAY_ALPHA = 0.45
#: Longest side of one montage tile in pixels (larger images are shrunk, never enlarged).
TILE = 256
#: The letter on the opposite edge of a tile, for the orientation letters of
#: :func:`medfuse.io.geometry.patient_orientation` (L/R, A/P, H/F) and S/I.
OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H", "S": "I", "I": "S"}


def _check_image(image: Any, what: str) -> np.ndarray:
    """An image as an array, or ValueError saying what was received instead."""
    arr = np.asarray(image)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        if arr.size == 0:
            raise ValueError(f"{what} is empty (shape {arr.shape})")
        return arr
    raise ValueError(f"{what} must be grey (H, W) or RGB (H, W, 3), got shape {arr.shape}")


def _as_unit(image: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 [0, 1] and a boolean mask -> 0/1; floats are returned as
    they are (assumed in [0, 1]), so their values reach the output untouched."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    return image


def overlay(base: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tint the pixels where ``mask`` is set red over ``base``, 45% opaque (the style of
    the paper's principal-region figure), so the anatomy stays visible under the mask.

    ``base`` is grey (H, W) or RGB (H, W, 3) in [0, 1]; ``mask`` (H, W) is boolean or in
    [0, 1] (a soft mask tints proportionally). Returns float32 RGB (H, W, 3).
    """
    base = _check_image(base, "overlay base")
    mask = np.asarray(mask)
    if mask.shape != base.shape[:2]:
        raise ValueError(f"overlay mask must be {base.shape[:2]} like its base, got {mask.shape}")
    rgb = base if base.ndim == 3 else np.repeat(base[..., None], 3, -1)
    tint = np.array(OVERLAY_TINT, np.float32)
    m = mask[..., None].astype(np.float32) * OVERLAY_ALPHA
    return (rgb * (1 - m) + tint * m).astype(np.float32)


def _font(size: int) -> Any:
    """Pillow's built-in font at ``size`` pixels (a fixed bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _shrink(image: np.ndarray, tile: int) -> np.ndarray:
    """Fit the longer side into ``tile`` pixels with area averaging (no aliasing); smaller
    images are left as they are."""
    h, w = image.shape[:2]
    scale = min(1.0, tile / max(h, w))
    if scale < 1.0:
        import cv2

        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
    return image.astype(np.float32)


def _boxed_text(draw: Any, xy: tuple[float, float], text: str, font: Any, fill: Any,
                box: Any, anchor: str = "la") -> None:
    """Text on a filled box, readable on any image."""
    bbox = draw.textbbox(xy, text, font=font, anchor=anchor)
    draw.rectangle(bbox, fill=box)
    draw.text(xy, text, fill=fill, font=font, anchor=anchor)


def montage(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    tile: int = TILE,
    *,
    columns: int | None = None,
    orientation: tuple[str, str] | None = None,
) -> np.ndarray:
    """Images side by side in a grid, row by row, on black.

    Each image is shrunk (area averaging) so its longer side is at most ``tile`` pixels
    and placed top-left in a cell the size of the largest tile; the grid has ``columns``
    columns, by default ``ceil(sqrt(n))`` (near-square, as ``--preview`` lays slices out). If any image is RGB, grey ones are repeated into RGB.
    Without labels and orientation the result is exactly the float pixels of the tiles
    (no quantisation), so writing it gives the same file whoever calls it.

    ``labels`` (one per image, e.g. slice numbers) are written in the top-left corner of
    each tile; ``orientation`` = (row direction, column direction) letters as
    :func:`medfuse.io.geometry.patient_orientation` gives them (``("L", "P")``) puts the
    letters at the right and bottom edge of every tile and their opposites at the left and
    top, so a reader can tell left from right. Text is drawn white on a black box; the
    result is then on 8-bit levels (k / 255). Returns float32 (H, W) or (H, W, 3).
    """
    if isinstance(images, np.ndarray) and images.ndim != 3:
        raise ValueError(f"montage takes a sequence of images, got an array of shape {images.shape}")
    arrays = [_check_image(im, f"montage image {n}") for n, im in enumerate(images)]
    if not arrays:
        raise ValueError("montage needs at least one image")
    if tile < 1:
        raise ValueError(f"montage tile must be at least 1 pixel, got {tile}")
    if columns is not None and columns < 1:
        raise ValueError(f"montage columns must be at least 1, got {columns}")
    if labels is not None and len(labels) != len(arrays):
        raise ValueError(f"montage got {len(labels)} labels for {len(arrays)} images")
    if orientation is not None and (len(orientation) != 2 or not all(orientation)):
        raise ValueError(f"orientation must be two direction letters such as ('L', 'P'), "
                         f"got {orientation!r}")
    tiles = [_shrink(_as_unit(a), tile) for a in arrays]
    colour = any(t.ndim == 3 for t in tiles)
    tiles = [np.repeat(t[..., None], 3, -1) if colour and t.ndim == 2 else t for t in tiles]
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    cols = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.zeros((rows * h, cols * w, *tiles[0].shape[2:]), np.float32)
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        grid[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t
    if labels is None and orientation is None:
        return grid
    return _annotate(grid, [t.shape[:2] for t in tiles], cols, (h, w), labels, orientation)


def _annotate(grid: np.ndarray, sizes: list[tuple[int, ...]], cols: int,
              cell: tuple[int, int], labels: Sequence[str] | None,
              orientation: tuple[str, str] | None) -> np.ndarray:
    """Draw tile labels and orientation letters onto an 8-bit copy of ``grid``."""
    from PIL import Image, ImageDraw

    from medfuse.io.images import to_uint

    img = Image.fromarray(to_uint(grid, 8))
    draw = ImageDraw.Draw(img)
    # Grey montages stay grey: white and black in the image's own mode.
    white: Any = (255, 255, 255) if grid.ndim == 3 else 255
    black: Any = (0, 0, 0) if grid.ndim == 3 else 0
    font = _font(12)
    letters = None
    if orientation is not None:
        right, bottom = (s.upper() for s in orientation)
        left = "".join(OPPOSITE.get(ch, "?") for ch in right)
        top = "".join(OPPOSITE.get(ch, "?") for ch in bottom)
        letters = (top, right, bottom, left)
    for n, (th, tw) in enumerate(sizes):
        r, c = divmod(n, cols)
        y, x = r * cell[0], c * cell[1]
        if letters is not None:
            top, right, bottom, left = letters
            _boxed_text(draw, (x + tw / 2, y + 1), top, font, white, black, "mt")
            _boxed_text(draw, (x + tw / 2, y + th - 1), bottom, font, white, black, "mb")
            _boxed_text(draw, (x + 1, y + th / 2), left, font, white, black, "lm")
            _boxed_text(draw, (x + tw - 1, y + th / 2), right, font, white, black, "rm")
        if labels is not None and labels[n]:
            _boxed_text(draw, (x + 2, y + 2), str(labels[n]), font, white, black)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


def triptych(
    mri: Sequence[np.ndarray],
    other: Sequence[np.ndarray],
    fused: Sequence[np.ndarray],
    slice_labels: Sequence[str] | None = None,
    tile: int = TILE,
    *,
    orientation: tuple[str, str] | None = None,
    other_name: str = "other",
) -> np.ndarray:
    """Three rows for the same slices: MRI, the other image, the fused result (one column
    per slice), the QC picture of ``--preview-style triptych``: a misplaced PET or a wrong
    window shows at a glance when the inputs sit right above the result.

    Each tile is named by its row and, with ``slice_labels``, its slice (``MRI 40``,
    ``PET 40``, ``fused 40``); ``orientation`` letters as in :func:`montage`. Returns
    float32 RGB (or grey when every tile is grey) in [0, 1].
    """
    n = len(fused)
    if n == 0 or len(mri) != n or len(other) != n:
        raise ValueError(f"triptych needs as many MRI, other and fused tiles, got "
                         f"{len(mri)}, {len(other)} and {n}")
    if slice_labels is not None and len(slice_labels) != n:
        raise ValueError(f"triptych got {len(slice_labels)} slice labels for {n} slices")
    names = ("MRI", other_name, "fused")
    labels = None
    if slice_labels is not None:
        labels = [f"{name} {s}" for name in names for s in slice_labels]
    elif orientation is not None:
        labels = [name if c == 0 else "" for name in names for c in range(n)]
    return montage([*mri, *other, *fused], labels, tile, columns=n, orientation=orientation)


def labelled_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    columns: Sequence[str],
    row_labels: Sequence[str] | None = None,
    *,
    gap: int = 4,
    header: int = 22,
) -> np.ndarray:
    """A comparison figure: one row per case, one column per image kind (MRI | other |
    each method), column names in a header strip, each row's name on its first tile.

    White background, ``gap`` pixels between cells; every cell is the size of the largest
    tile and tiles sit top-left in it; a ``None`` tile (a method that failed on this
    case) is a light grey cell, so a missing result is visible rather than shifting the
    columns. Column names too wide for a cell are shortened with an ellipsis. Returns
    float32 RGB in [0, 1] on 8-bit levels.
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("labelled_grid needs at least one row")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"labelled_grid got {len(row_labels)} row labels for {len(rows)} rows")
    ncol = len(columns)
    checked: list[list[np.ndarray | None]] = []
    for r, row in enumerate(rows):
        if len(row) != ncol:
            raise ValueError(f"labelled_grid row {r} has {len(row)} tiles for {ncol} columns")
        checked.append([None if t is None else _check_image(t, f"tile ({r}, {c})")
                        for c, t in enumerate(row)])
    present = [t for row in checked for t in row if t is not None]
    th = max([t.shape[0] for t in present], default=1)
    tw = max([t.shape[1] for t in present], default=1)
    nrow = len(checked)
    width = ncol * tw + (ncol + 1) * gap
    height = header + nrow * th + (nrow + 1) * gap
    canvas = np.full((height, width, 3), 255, np.uint8)
    for r, row in enumerate(checked):
        y = header + gap + r * (th + gap)
        for c, t in enumerate(row):
            x = gap + c * (tw + gap)
            if t is None:
                canvas[y : y + th, x : x + tw] = 200
                continue
            canvas[y : y + t.shape[0], x : x + t.shape[1]] = _rgb8(t)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    font = _font(14)
    for c, name in enumerate(columns):
        x = gap + c * (tw + gap)
        text = name
        while len(text) > 3 and draw.textlength(text, font=font) > tw - 4:
            text = text[:-2] + "…"
        draw.text((x + 2, 3), text, fill=(0, 0, 0), font=font)
    small = _font(12)
    for r, name in enumerate(row_labels or []):
        y = header + gap + r * (th + gap)
        box = draw.textbbox((gap + 3, y + 2), name, font=small)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((gap + 3, y + 2), name, fill=(255, 255, 0), font=small)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


def _rgb8(tile: np.ndarray) -> np.ndarray:
    """A tile as 8-bit RGB: uint8 as it is, floats in [0, 1] rounded as the writers round."""
    from medfuse.io.images import to_uint

    t = tile if tile.dtype == np.uint8 else to_uint(tile, 8)
    return np.repeat(t[..., None], 3, -1) if t.ndim == 2 else t


# -- the --preview picture ----------------------------------------------------------------

#: Tiles in a ``--preview`` montage (evenly spaced through the fused slices).
PREVIEW_TILES = 16
#: Longest side of one montage tile in pixels.
PREVIEW_TILE_SIZE = 256
#: ``--preview-style``: a grid of fused slices, or MRI | other | fused rows.
PREVIEW_STYLES = ("montage", "triptych")
#: Slices (columns) in a triptych preview.
TRIPTYCH_SLICES = 6
#: Tiles smaller than this (pixels, shorter side) get no slice numbers or letters.
LABEL_MIN_TILE = 64


class Montage:
    """``--preview``: up to PREVIEW_TILES fused slices, evenly spaced, in one image grid; or,
    with ``style="triptych"``, up to TRIPTYCH_SLICES slices as three rows, MRI | other |
    fused, so a reader checks the inputs and the result of each slice side by side.

    ``labels`` writes each tile's slice number in its corner and ``orientation`` (the row
    and column direction letters of :func:`medfuse.io.geometry.patient_orientation`) puts
    the patient's direction letters on the tile edges; both are left out when the tiles are
    smaller than LABEL_MIN_TILE pixels, where the text would hide the image."""

    def __init__(self, path: Path, indices: list[int], force: bool, inputs: tuple[Path, ...],
                 *, labels: bool = False, orientation: tuple[str, str] | None = None,
                 style: str = "montage", other_name: str = "other"):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"--preview {path.name}: give an image name such as preview.png")
        if style not in PREVIEW_STYLES:
            raise UsageError(f"--preview-style {style!r}: expected one of "
                             f"{', '.join(PREVIEW_STYLES)}")
        check_output(path, force, inputs)
        self.path, self.force = path, force
        self.style, self.labels, self.orientation = style, labels, orientation
        self.other_name = other_name
        most = PREVIEW_TILES if style == "montage" else TRIPTYCH_SLICES
        k = min(most, len(indices))
        if style == "triptych":
            # the middle of k equal runs of slices: the end slices of a head volume are
            # usually empty, and a triptych has few columns to spare
            picks = ((np.arange(k) + 0.5) * len(indices) / max(k, 1)).astype(int)
        else:
            picks = np.linspace(0, len(indices) - 1, k).round().astype(int) if k else []
        self.wanted = {indices[i] for i in picks}
        self.tiles: dict[int, np.ndarray] = {}
        self.inputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _fit(image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, PREVIEW_TILE_SIZE / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
        return image.astype(np.float32)

    def add(self, index: int, image: np.ndarray, mri: np.ndarray | None = None,
            other: np.ndarray | None = None) -> None:
        """Keep the fused ``image`` of slice ``index`` if it is one of the picked slices;
        a triptych also needs the slice's ``mri`` and ``other`` planes (as fused)."""
        if index not in self.wanted:
            return
        self.tiles[index] = self._fit(image)
        if self.style == "triptych":
            if mri is None or other is None:
                raise ValueError("a triptych preview needs the MRI and other planes")
            self.inputs[index] = (self._fit(mri), self._fit(other))

    def write(self, to: Path | None = None) -> Path | None:
        """Write the preview to its path, or to ``to`` (a staged copy of it); returns the
        preview's own path (None when no slice was kept)."""
        if not self.tiles:
            return None
        order = sorted(self.tiles)
        small = min(min(t.shape[:2]) for t in self.tiles.values()) < LABEL_MIN_TILE
        orientation = None if small else self.orientation
        if self.style == "triptych":
            grid = triptych([self.inputs[i][0] for i in order],
                            [self.inputs[i][1] for i in order],
                            [self.tiles[i] for i in order],
                            [str(i) for i in order] if self.labels and not small else None,
                            tile=PREVIEW_TILE_SIZE, orientation=orientation,
                            other_name=self.other_name)
        else:
            labels = [str(i) for i in order] if self.labels and not small else None
            grid = montage([self.tiles[i] for i in order], labels, tile=PREVIEW_TILE_SIZE,
                           orientation=orientation)
        write_image(to or self.path, grid, bit_depth=8, force=self.force)
        return self.path


__all__ = [
    "PREVIEW_STYLES",
    "Montage",
    "OPPOSITE",
    "OVERLAY_ALPHA",
    "OVERLAY_TINT",
    "TILE",
    "labelled_grid",
    "montage",
    "overlay",
    "triptych",
]
