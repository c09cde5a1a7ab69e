"""The training loop (one readable Trainer). Imports evaluation (validation metrics), config and below."""
