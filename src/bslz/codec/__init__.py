"""Entropy coders, the generalized-Gaussian model, quantizers and the rate function."""
