"""Search: the space as Optuna distributions, samplers and define-by-run; schedulers; warm start."""
