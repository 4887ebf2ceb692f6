"""The Typer application object. Command modules register on it; nothing here imports
torch, so ``medfuse --help`` stays instant."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="medfuse",
    help="Fuse registered multimodal medical images (MRI with CT, PET or SPECT) with GeSeNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
