"""The middle layers: settings, the store (all SQL), the sampler and the read model.

Imports `footprint.common` and `footprint.probes` only; never the renderers or the run machinery above.
"""
