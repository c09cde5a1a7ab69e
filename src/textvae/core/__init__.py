"""Shared helpers every layer may use: the project's error types (errors) and run-folder I/O (rundir: atomic writes, locks). Imports nothing of textvae."""
