"""Running the plan: DVC stages and GPU slots. Imports reports and below."""
