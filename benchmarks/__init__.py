"""trainq's benchmarks: each measure side by side with its baseline, in one run (``python -m benchmarks``)."""
