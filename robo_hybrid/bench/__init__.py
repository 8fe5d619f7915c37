"""Benchmarks that print figures: latency, learning (ours vs stable-baselines3), BC throughput."""
