"""Datasets: each loads into train / validation / test tensors that live on the run's device."""
