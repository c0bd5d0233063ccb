"""Offline datasets on disk, the multi-task replay and the DataModule."""

from smac_lightning.data.datamodule import OfflineMetaDataModule
from smac_lightning.data.dataset import DatasetError, OfflineDataset, load_dataset, save_dataset
from smac_lightning.data.generate import generate_dataset
from smac_lightning.data.replay import MultiTaskReplay

__all__ = [
    "DatasetError",
    "MultiTaskReplay",
    "OfflineDataset",
    "OfflineMetaDataModule",
    "generate_dataset",
    "load_dataset",
    "save_dataset",
]
