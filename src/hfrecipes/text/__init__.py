"""The model side of text: presets, tokenizers, post-training and alignment helpers, rewards, the PPO plumbing,
distillation, retrieval and RAG, quantization and evaluation. What a user changes lives beside the recipes."""
