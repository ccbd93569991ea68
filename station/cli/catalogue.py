"""`station catalogue list|import`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from station.cli.common import ConfigOpt, DataDirOpt, fail, out, print_json, station_config

catalogue_app = typer.Typer(no_args_is_help=True, help="Catalogue: list and import SKUs.")


@catalogue_app.command("list")
def catalogue_list(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the catalogue's SKUs."""
    from station.app import load_catalogue
    from vision.catalogue import CatalogueError

    cfg = station_config(config, data_dir)
    try:
        cat = load_catalogue(cfg)
    except CatalogueError as exc:
        fail(str(exc))
    rows = [{"sku": i.sku, "category": i.category, "brand": i.brand, "name": i.name,
             "reference_images": [str(cat.root / p) for p in i.reference_images],
             "hygiene": i.hygiene, "safety": i.safety, "liquid": i.liquid} for i in cat.items.values()]
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"catalogue {cat.root}")
    for col in ("sku", "category", "brand", "name", "flags", "images"):
        table.add_column(col)
    for r in rows:
        flags = ",".join(k for k in ("hygiene", "safety", "liquid") if r[k])
        table.add_row(r["sku"], r["category"], r["brand"], r["name"], flags, str(len(r["reference_images"])))
    out.print(table)


def _link_or_copy(src: str, dst: str) -> None:
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@catalogue_app.command("import")
def catalogue_import(
    directory: Annotated[Path, typer.Argument(help="folder with catalogue.csv and its images")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Validate a catalogue folder and copy it into the station's data directory as the active catalogue."""
    import shutil

    from rich.progress import Progress

    from station.app import imported_catalogue_dir
    from vision.catalogue import CatalogueError, stage_import
    from vision.compare import usable_outline, segment_item
    from vision.embedding import BackboneError
    from vision.features import CACHE_DIR
    from vision.identity import INDEX_FILE, LOCAL_DIR, build_catalogue_index

    cfg = station_config(config, data_dir)
    dest = imported_catalogue_dir(cfg)
    staging = cfg.station.data_dir / "catalogue.importing"
    replaced = cfg.station.data_dir / "catalogue.replaced"
    for leftover in (staging, replaced):  # from an import that was killed
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink()
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        # Only catalogue.csv and the images it names are copied, each checked (no links, fifos or devices, no
        # path out of the folder, decodable, bounded pixels); on any refusal nothing is left behind.
        staged = stage_import(directory, staging, views=cfg.station.views)
        previous = dest / CACHE_DIR / INDEX_FILE
        if previous.is_file() and not previous.is_symlink():
            # Embeddings are keyed by image hash: views already indexed are not embedded again.
            (staging / CACHE_DIR).mkdir(exist_ok=True)
            shutil.copy2(previous, staging / CACHE_DIR / INDEX_FILE)
            previous_local = dest / CACHE_DIR / LOCAL_DIR
            if previous_local.is_dir() and not previous_local.is_symlink():
                # hard links where the file system allows: 10,000 SKUs' local features are ~1.5 GB
                shutil.copytree(previous_local, staging / CACHE_DIR / LOCAL_DIR, symlinks=False,
                                copy_function=_link_or_copy)
        views = sum(len(i.reference_images) for i in staged.items.values())
        with Progress(console=out, transient=True) as bar:
            task = bar.add_task("indexing catalogue views", total=views)
            _, embedded = build_catalogue_index(staged, segment=lambda img: usable_outline(segment_item(img)[0]),
                                                progress=lambda: bar.advance(task))
        if dest.exists():
            dest.rename(replaced)  # renames, not a copy: the active catalogue is never half-written
        staging.rename(dest)
    except (CatalogueError, BackboneError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if replaced.exists() and not dest.exists():
            replaced.rename(dest)
        fail(str(exc) if not isinstance(exc, OSError) else f"cannot import the catalogue into {dest}: "
             f"{exc.strerror or exc}; the active catalogue is unchanged")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(replaced, ignore_errors=True)
    cat = staged
    where = ("" if cfg.catalogue.path is None else
             f"; the config's catalogue.path ({cfg.catalogue.path}) still points elsewhere: remove it to use this one")
    out.print(f"imported {len(cat)} SKUs ({views} views, {embedded} newly indexed) into {dest}: the station uses "
              f"it from now on{where}")


