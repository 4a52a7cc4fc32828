"""Physics forward models as torch operators (``A``, ``A_adjoint``), lengths in µm."""
