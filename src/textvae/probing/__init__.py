"""Latent-space probes (SPEC §6-7): BLEU, smoothness, noisy reconstruction, interpolation, copying, classification. Imports evaluation, config and below."""
