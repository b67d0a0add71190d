"""One LightningModule per kind of job, all built on `base.TaskModule`."""
