"""The scores of each task type, from predictions (numpy, no torch): computed once at
evaluation time and again, from the saved predictions, by the report's bootstrap."""
