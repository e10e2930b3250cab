"""Image–text models: CLIP data, caption tokenizer, towers, and the global-batch gather of contrastive training."""
