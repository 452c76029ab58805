"""Benchmarks (`make bench`, see __main__): each prints its ratios side by side, measured in one run.

Speed and memory targets of the issues are checked here, not by timed tests.
"""
