"""Benchmarks: each module's ``run()`` returns figures; ``bench.run`` prints them as JSON."""
