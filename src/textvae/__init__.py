"""textvae: LSTM text VAEs with encoder pretraining and per-dimension free bits (Li et al., EMNLP 2019)."""

__version__ = "0.1.0"
