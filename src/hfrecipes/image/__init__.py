"""The model side of the image diffusion recipe: its `DiffusionComponents` (`components`) and the offline evaluation
of image generators and image–text models (`evaluation`)."""
