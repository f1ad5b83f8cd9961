"""The trial workers (Ray actors): the trainable, the reporting callback, model reuse, placement, checkpoints."""
