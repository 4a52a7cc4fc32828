"""Bundled sample datasets (see ``wsprior.data.samples``); shipped as ``wsprior.sample_data``."""
