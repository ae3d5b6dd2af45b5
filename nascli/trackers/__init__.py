"""Experiment trackers (`logger=`): each module registers one."""

from nascli.trackers import csv_files, mlflow, tensorboard, wandb  # noqa: F401  (registers them)
