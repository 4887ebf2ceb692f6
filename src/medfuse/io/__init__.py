"""Reading and writing only, nothing about fusion: the one image type (volume.py), readers
(images, nifti, dicom), writers (sinks), the output policy (outputs) and dataset layout."""
