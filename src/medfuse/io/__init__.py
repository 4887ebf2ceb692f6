"""Reading and writing: ordinary images here; medical formats in their own modules."""

from medfuse.io.images import IMAGE_SUFFIXES, ImageData, read_image, write_image

__all__ = ["IMAGE_SUFFIXES", "ImageData", "read_image", "write_image"]
