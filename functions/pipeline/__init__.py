"""The training pipeline's run state and the one shape of its steps."""
