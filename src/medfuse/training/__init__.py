"""Training: data and patches, pseudo-labels, losses, the semantic module and GeSeNet loops."""
