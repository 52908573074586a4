"""Grounding samples (ScreenSpot-Pro and the other declared layouts): the typed model, the
layouts, loading, validation, selection, synthesis, images."""
