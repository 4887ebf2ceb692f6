"""The napari plugin's tests run under Qt's offscreen platform; they skip without the
extra (``pip install medfuse[napari]`` and pytest-qt).

napari's own pytest plugin is kept off for the whole suite (``-p no:napari`` in
pyproject.toml: its autouse fixtures would import Qt into every test); the fixtures these
tests use are taken from it here."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:
    from napari.utils._testsupport import make_napari_viewer, mock_app_model  # noqa: F401
except ImportError:  # no napari: test_plugin.py skips
    pass
