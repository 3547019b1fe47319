"""imexport: export raw ScanImage recordings plane by plane to TIFF, Suite2p, Zarr and HDF5.

``imexport.imread`` and ``imexport.imwrite`` are the in-process API (``imexport.api``);
they are loaded on first use so that workflow jobs importing a submodule pay nothing for them.
"""

__version__ = "0.1.0"
__all__ = ["imread", "imwrite"]


def __getattr__(name):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'imexport' has no attribute {name!r}")
