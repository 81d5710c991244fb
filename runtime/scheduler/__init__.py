"""The scheduler: requests, admission and batching policy, one step of the loop, stop checks."""
