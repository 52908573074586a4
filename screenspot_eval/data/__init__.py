"""ScreenSpot-Pro samples: the typed model, loading, validation, selection, synthesis, images."""
