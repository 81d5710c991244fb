"""Model execution: config, loading (HF folders, GGUF), tokenizer, layers, models, the runner
and the ForwardBatch it runs."""
