"""Evaluation (SPEC §5): IW-NLL/PPL, Recon, KL, MI, AU, the plain reference formulas and the fast path beside them. Imports config and below."""
