"""A run's network and data: batched probabilities in the one scoring precision, the run's split and cache."""
