"""The machinery the image and video diffusion recipes share: the `DiffusionComponents` interface, the training loop
on Accelerate (`loop`, `checkpoints`, `noise`), UNets, schedulers, VAEs and pipelines, sample grids, run reports
(`runs`) and the offline generator evaluation (`evaluation`). What a recipe's step computes (its loss, sampling and
evaluation call) lives beside the recipe script."""
