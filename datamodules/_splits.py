"""The dataloader methods every datamodule here shares."""

from __future__ import annotations

from torch.utils.data import DataLoader


class SplitLoaders:
    """train / val / test / predict dataloaders of a LightningDataModule from the ``_loader(split, shuffle)
    -> DataLoader`` that the datamodule defines (split in "train", "val", "test"). Only the training split
    is shuffled; predict serves the test split."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
