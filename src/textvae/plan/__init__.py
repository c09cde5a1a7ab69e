"""What an experiment needs: run and row identities, the paper's tables, and the jobs (commands, inputs, outputs) of the pipeline. Imports training/probing and below."""
