"""hfrecipes: train generative models through the whole lifecycle with the Hugging Face stack."""

__version__ = "0.1.0"
