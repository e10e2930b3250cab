"""The model side of the text-to-video recipe: clips as data (`data`), the backbones and their presets
(`backbones`), identity pixel VAEs and video VAEs (`vaes`), text encoders (`text`), the recipe's
`DiffusionComponents` (`components`), motion and consistency evaluation (`evaluation`) and GIF grids (`grids`)."""
