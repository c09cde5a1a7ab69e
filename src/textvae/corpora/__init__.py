"""Corpora: the dataset registry, verified downloads, preparation, the embedded synthetic grammar and the vocabulary/batching of prepared text. Imports core only."""
