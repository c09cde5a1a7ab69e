"""The textvae command line: dispatch and the subcommands that only parse arguments. The top layer."""

from textvae.cli.dispatch import main  # noqa: E402,F401  (the console script `textvae = textvae.cli:main`)
