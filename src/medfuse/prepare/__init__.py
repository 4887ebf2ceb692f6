"""Decisions made once per pair before fusion: windows, colour maps, grids, luminance."""
