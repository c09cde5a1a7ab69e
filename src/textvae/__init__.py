"""textvae: LSTM text VAEs with encoder pretraining and per-dimension free bits (Li et al., EMNLP 2019)."""

__version__ = "0.1.0"

# SPEC §4: the seed of every command that takes one (training, noise streams, probes, corpus sampling) unless
# told otherwise; its one definition
DEFAULT_SEED = 783435
