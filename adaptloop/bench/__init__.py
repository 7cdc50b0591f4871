"""Benchmarks the CLI runs (`adaptloop bench`): AdaptFT-Bench (``adaptft``) and its log generator."""
