"""The audio side of hfrecipes: speech datasets, text-to-speech features, models, evaluation and synthesis."""
