"""Benchmarks: each module has run(...) returning rows and main(); see veil.bench.unlearning."""
