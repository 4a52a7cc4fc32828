"""Synthetic phantoms and measurement simulation with physics independent of ``wsprior.physics``."""
