"""`station` command line. Contracts (names, flags, JSON fields, exit codes) are documented in the README.

Exit codes: 0 done / decided, 1 internal failure, 2 bad input (the message says what and what to do).

One module per subsystem, each with its own ``typer.Typer()``s; this file builds the root app and its groups and
includes the modules' commands in a fixed order (the order ``--help`` lists them in). Shared helpers live in
station.cli.common; the benchmarks' work lives in station.bench.
"""

from __future__ import annotations

import typer

from station.cli import (catalogue, config, fleet, hardware, inspections, labels, metrics, models, records, scale,
                         sync, text, training, ui, vision)
from station.cli.common import StationGroup, include

app = typer.Typer(cls=StationGroup, add_completion=False, no_args_is_help=True, help="Returns inspection station.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks.")
dataset_app = typer.Typer(no_args_is_help=True, help="Datasets for the defect detector.")
app.add_typer(dataset_app, name="dataset")
app.add_typer(catalogue.catalogue_app, name="catalogue")
app.add_typer(config.config_app, name="config")
app.add_typer(bench_app, name="bench")

include(app, inspections.app)
include(bench_app, inspections.bench_app)
include(app, training.app)
include(dataset_app, training.dataset_app)
include(app, records.app)
include(app, sync.app)
include(bench_app, sync.bench_app)
include(app, ui.app)
include(bench_app, ui.bench_app)
include(app, hardware.app)
include(bench_app, hardware.bench_app)
include(app, vision.app)
include(bench_app, vision.bench_app)
include(app, models.app)
include(dataset_app, models.dataset_app)
include(bench_app, fleet.bench_app)
include(app, scale.app)
include(app, labels.app)
include(app, metrics.app)
include(app, text.app)
include(bench_app, training.bench_app)  # `bench detector` is listed last


def main() -> None:
    app()
