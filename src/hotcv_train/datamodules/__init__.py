"""One LightningDataModule per kind of data, all built on `base.HFDataModule`."""
