"""Model families in one place: what the rest of the tool must not guess about a model.

An adapter declares a family's default prompt template, the size the model sees for a given
image and image budget, the budget knob (its name, default and recorded value), the variants
the family has, and the checkpoint architectures it covers. Presets (``presets/*.toml``) pair
an adapter with a published model's own prompt, convention and budget. The generic layers
(``protocol``, ``run``, ``store``, ``report``) reach families only through :mod:`registry`.
"""
