"""Task metrics as torchmetrics `Metric`s: state summed over batches and DDP ranks."""
