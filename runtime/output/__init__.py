"""What a request returns: incremental detokenization with stop-string trimming, and the
SGLang-shaped results and stream events built from scheduler outputs."""
