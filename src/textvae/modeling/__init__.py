"""The model and what defines a method: the LSTM VAE, the objectives (SPEC §3), the method registry and checkpoints. Imports corpora and core."""
