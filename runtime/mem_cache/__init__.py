"""KV memory: the request-to-token table, the token-level KV pool and the radix cache over it."""
