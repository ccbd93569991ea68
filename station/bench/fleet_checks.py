"""The fleet bench's checks (station.bench.fleet): every station's store against the platform (records lost,
duplicated, heads), and the platform's brand and streamer aggregates against the sum of the stations."""

from __future__ import annotations

import json
from pathlib import Path


def expected_aggregates(stores_rows: list[list[dict]]) -> dict[str, dict]:
    """What the platform's aggregates must say, from what the stations hold: per brand and per streamer,
    over the current version of each record (a station's own override replaces its record)."""
    out: dict[str, dict] = {"brands": {}, "streamers": {}}
    for rows in stores_rows:
        overridden = {r["overrides"] for r in rows if r["overrides"]}
        for r in rows:
            if r["record_id"] in overridden:
                continue
            shares = json.loads(r["decision_json"])["liability"]
            for kind, key in (("brands", r["brand"]), ("streamers", r["streamer"])):
                if key is None:
                    continue
                g = out[kind].setdefault(key, {"inspections": 0, "by_reason": {}, "liability": {}})
                g["inspections"] += 1
                g["by_reason"][r["reason"]] = g["by_reason"].get(r["reason"], 0) + 1
                for sh in shares:
                    g["liability"][sh["party"]] = g["liability"].get(sh["party"], 0.0) + float(sh["share"])
    return out


def aggregate_mismatches(expected: dict[str, dict], platform: dict[str, list[dict]], run: str) -> list[str]:
    problems = []
    for kind in ("brands", "streamers"):
        got = {g["id"]: g for g in platform[kind] if str(g["id"]).startswith(run)}
        want = expected[kind]
        if set(got) != set(want):
            problems.append(f"{kind}: platform has {sorted(got)}, stations hold {sorted(want)}")
            continue
        for key, w in want.items():
            g = got[key]
            if g["inspections"] != w["inspections"]:
                problems.append(f"{kind} {key}: {g['inspections']} inspections on the platform, "
                                f"{w['inspections']} on the stations")
            by_reason = {r: v["count"] for r, v in g["return_share_by_reason"].items()}
            if by_reason != w["by_reason"]:
                problems.append(f"{kind} {key}: returns by reason differ: {by_reason} vs {w['by_reason']}")
            for party, total in w["liability"].items():
                if abs(g["liability_totals"].get(party, 0.0) - total) > 1e-3:
                    problems.append(f"{kind} {key}: {party} liability {g['liability_totals'].get(party)} on "
                                    f"the platform, {total:.4f} on the stations")
    return problems


def check_station(station_id: str, data_dir: Path, engine) -> dict:
    """One station's store against the platform database (``engine``): lost, duplicated, heads; ``rows``
    are the station's records (for the aggregates)."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from station.evidence import all_leaves, merkle_root
    from station.records import StationStore
    from station.server.models import Record, RecordConflict, TreeHead, TreeHeadConflict

    with StationStore(Path(data_dir) / "station.db") as store:
        rows = list(store.rows())
        pending = store.pending_count()
        report = store.verify()
        head = store.latest_head()
        leaves = all_leaves(store.db)
    with Session(engine) as s:
        platform_ids = list(s.scalars(select(Record.record_id).where(Record.station_id == station_id)))
        leaf_dups = s.scalar(select(func.count()).select_from(
            select(Record.leaf_index).where(Record.station_id == station_id, Record.leaf_index.is_not(None))
            .group_by(Record.leaf_index).having(func.count() > 1).subquery()))
        conflicts = s.scalar(select(func.count()).select_from(RecordConflict)
                             .where(RecordConflict.station_id == station_id))
        heads = list(s.scalars(select(TreeHead).where(TreeHead.station_id == station_id)
                               .order_by(TreeHead.tree_size)))
        refused = [(c.tree_size, c.root_hash) for c in s.scalars(
            select(TreeHeadConflict).where(TreeHeadConflict.station_id == station_id))]
    station_ids = {r["record_id"] for r in rows}
    lost = len(station_ids - set(platform_ids))
    duplicated = len(platform_ids) - len(set(platform_ids)) + len(set(platform_ids) - station_ids) + conflicts \
        + (leaf_dups or 0)
    problems = []
    if head is None or not heads:
        problems.append("no signed head on the station or none witnessed by the platform")
    else:
        last = heads[-1]
        if (last.tree_size, last.root_hash) != (head.tree_size, head.root_hash):
            problems.append(f"platform's last head is size {last.tree_size}, the station's is {head.tree_size}")
        for h in heads:
            if h.tree_size > len(leaves) or merkle_root(leaves[:h.tree_size]).hex() != h.root_hash:
                problems.append(f"witnessed head of size {h.tree_size} is not a root of the station's log")
    # A head refused for want of a consistency proof from the platform's last head (the station had not seen
    # that head acknowledged: the reply was lost to the cut or the kill) is retried with one and stored; it
    # is a root of the station's log. A refused head that is not is a fork.
    retried = 0
    for size, root in refused:
        if size <= len(leaves) and merkle_root(leaves[:size]).hex() == root:
            retried += 1
        else:
            problems.append(f"the platform refused a head of size {size} that is not a root of the station's log")
    if not report.ok:
        problems.append(f"station log does not verify: {list(report.problems)[:2]}")
    return {"station_id": station_id, "records": len(rows), "on_platform": len(platform_ids),
            "pending": pending, "lost": lost + pending, "duplicated": duplicated, "heads_witnessed": len(heads),
            "heads_refused_then_proven": retried,
            "heads_consistent": not problems, "problems": problems, "rows": rows}
