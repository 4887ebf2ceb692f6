"""The napari plugin (optional extra ``medfuse[napari]``): a reader for DICOM series
folders, NIfTI and images through :func:`medfuse.read`, a Fuse widget and a Masks widget
running :func:`medfuse.fuse_volume` in a worker thread, and a writer that saves the fused
layer as NIfTI or DICOM with its provenance record. The contributions are declared in
``napari.yaml`` (npe2); nothing here is imported until napari asks for it."""
