"""Offline datasets on disk, the multi-task replay and the DataModule."""

from smac_lightning.data.datamodule import MetaDataModule, OfflineMetaDataModule
from smac_lightning.data.dataset import DatasetError, OfflineDataset, load_dataset, save_dataset
from smac_lightning.data.generate import generate_dataset
from smac_lightning.data.online import OnlineMetaDataModule
from smac_lightning.data.replay import MultiTaskReplay

__all__ = [
    "DatasetError",
    "MetaDataModule",
    "MultiTaskReplay",
    "OfflineDataset",
    "OfflineMetaDataModule",
    "OnlineMetaDataModule",
    "generate_dataset",
    "load_dataset",
    "save_dataset",
]
