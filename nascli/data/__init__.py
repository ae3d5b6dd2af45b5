"""Datasets: each loads into train / validation / test tensors that live on the run's device."""

from nascli.data import arrays, audio, av_digits, cifar10, digits, folder, mnist, multimodal, synthetic, table, text  # noqa: E402,F401  (importing a module registers its dataset)
