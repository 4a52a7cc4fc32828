"""napari plugin: dock widgets for the three tasks and the bundled sample data (npe2 manifest
``napari.yaml``). The widgets only gather parameters and call :mod:`wsprior.api`."""
