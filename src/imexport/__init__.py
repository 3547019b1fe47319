"""imexport: export raw ScanImage recordings plane by plane to TIFF, Suite2p, Zarr and HDF5."""

__version__ = "0.1.0"
