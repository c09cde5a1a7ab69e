"""Settings of a run: each knob's declaration, its value checks, and the resolver of params.yaml (global → dataset → method → flags). Imports modeling and below."""
