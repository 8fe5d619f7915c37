"""Training side: BC trainer, demo datasets, checkpoints and resume, run logs, torchrun helpers."""
