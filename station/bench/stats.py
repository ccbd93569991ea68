"""The one percentile every benchmark reports with (nearest rank, never interpolated), so their p50 / p95 mean
the same thing. station.domain keeps the implementation (models.training.bench imports it from there too)."""

from station.domain import percentile

__all__ = ["percentile"]
