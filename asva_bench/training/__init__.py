"""Training code for the mini evaluators and models."""
