"""Engine layer: runtime (device, seeding), checkpoints, the trainer, evaluation and studies. Uses the paper and data layers; used by the teaching layer and the CLI."""
