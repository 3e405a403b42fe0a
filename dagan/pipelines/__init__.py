"""Pipelines tie the networks together: animation, training, depth training, evaluation."""
