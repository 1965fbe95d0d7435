"""Internals of :class:`flatvec.Objective`: sweeps over the data, derivatives and curvature
products, data preparation and checks, residual forms, and the caches that keep a model's or a
closure's objective across calls. Nothing here is public API."""
