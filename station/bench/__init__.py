"""Benchmarks: the work behind `station bench ...` (the commands in station.cli parse options, call one function
here and print). One percentile for all of them: station.bench.stats.percentile."""
