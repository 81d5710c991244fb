"""Sampling parameters (validated per request) and the batched sampler."""
