"""What several parts use: the feature transformation, dataset reading, model formats and scoring."""
