"""Benchmarks: `make bench` (python -m bench).

Every figure is a ratio against a baseline measured in the same run, on the same machine,
interleaved with ours: absolute times on a shared machine mean little. Each figure is one
JSON line on stdout: {"bench", "figure", "ours", "baseline", "ratio", "goal"} with
ratio = ours / baseline and goal the target for that ratio (e.g. "<= 1.0"). Progress and
anything the code under test prints go to stderr.
"""
