"""napari plugin: dock widgets for the three tasks and for training a diffusion prior, and the
bundled sample data (npe2 manifest ``napari.yaml``). The widgets only gather parameters and call
:mod:`wsprior.api` (the training widget: :func:`wsprior.prior.train.train`)."""
