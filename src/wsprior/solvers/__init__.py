"""Reconstruction algorithms: classical closed-form / iterative solvers, diffusion samplers."""
