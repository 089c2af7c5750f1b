"""``sharpmaml baselines check|update|show``: stored accuracy baselines and the regression gate.

``check`` re-runs the measured rows of ``realdata/baselines/baselines.csv`` (rows of a GPU scale only
where CUDA is present, otherwise SKIPPED with the reason), compares each with its stored
accuracy under the row's tolerance rule, writes ``results/baselines/check.csv`` and prints
the table; exit 1 if a row failed. It never writes the baselines file. ``update`` re-measures
chosen rows, prints the diff of the file and writes it atomically (refused when ``CI`` is
set: baselines move only deliberately). ``show`` prints the stored rows. Bad input (a missing
or invalid file, an unknown row or scale, missing data) exits 4 before any compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.errors import UsageError
from infra.paths import DEFAULT_BASELINES, DEFAULT_RESULTS
from infra.threads import add_threads_argument
from realdata.baselines.scales import BASELINE_SCALES

if TYPE_CHECKING:
    import pandas as pd

    from realdata.baselines.format import Baseline
    from realdata.baselines.measure import RowSpec
    from realdata.datasets import DatasetSplits

CHECK_TABLE = DEFAULT_RESULTS / "baselines" / "check.csv"
TABLE_COLUMNS = ["row_id", "stored", "measured", "delta", "tolerance", "verdict", "reason"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``baselines`` with its actions ``check``, ``update`` and ``show``."""
    parser = subparsers.add_parser(
        "baselines",
        help="stored accuracy baselines and the regression gate",
        description="Stored accuracy baselines (realdata/baselines/baselines.csv) and the regression "
        "gate that re-runs them (docs/baselines.md).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    check = actions.add_parser(
        "check",
        help="re-run the measured rows and compare them with the stored ones",
        description="The regression gate: re-run every measured row (or the chosen ones), "
        "compare with the stored accuracy under its tolerance rule; exit 1 if a "
        "row dropped or rose beyond its tolerance.",
    )
    _add_file(check)
    _add_selection(check)
    check.add_argument(
        "--out",
        type=Path,
        default=CHECK_TABLE,
        metavar="CSV",
        help=f"the gate's table (default {CHECK_TABLE})",
    )
    _add_data(check)
    _add_jobs(check)
    check.add_argument(
        "--skip-missing-data",
        action="store_true",
        help="report rows whose dataset is absent as SKIPPED (with where it was "
        "looked for) instead of stopping with exit 4; for CI machines",
    )
    check.set_defaults(handler=run_check, resume_hint=lambda a: f"no gate table written to {a.out}")

    update = actions.add_parser(
        "update",
        help="re-measure chosen rows, print the diff and rewrite the file",
        description="Measure the rows of a scale (or the chosen rows) on this machine, print "
        "the diff of the baselines file and write it. Refused when CI is set.",
    )
    _add_file(update)
    _add_selection(update, required=True)
    update.add_argument("--dry-run", action="store_true", help="print the diff, leave the file as it is")
    _add_data(update)
    _add_jobs(update)
    update.set_defaults(handler=run_update, resume_hint=lambda a: f"{a.baselines} left as it is")

    show = actions.add_parser(
        "show", help="print the stored rows", description="Print the stored rows with their tolerance."
    )
    _add_file(show)
    show.add_argument(
        "--scale",
        action="append",
        metavar="NAME",
        help="only rows of this scale ('paper' for the paper rows); repeatable",
    )
    show.set_defaults(handler=run_show)


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baselines",
        type=Path,
        default=DEFAULT_BASELINES,
        metavar="CSV",
        help=f"the stored baselines (default {DEFAULT_BASELINES})",
    )


def _add_selection(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--scale",
        action="append",
        choices=list(BASELINE_SCALES),
        help="only the rows of this scale; repeatable"
        + ("" if required else " (default: every measured row)"),
    )
    group.add_argument("--rows", nargs="+", metavar="ROW_ID", help="only these rows")


def _add_data(parser: argparse.ArgumentParser) -> None:
    add_threads_argument(
        parser,
        "the scale's own: 1 for ci, measured fastest on the CPU; torch's own for gpu. The stored "
        "rows record the count they were measured with (device column); another may move them",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        metavar="PATH",
        help="folder holding omniglot/ (default: $SHARPMAML_DATA or ../shared/data)",
    )


def _with_threads(specs: list[RowSpec], threads: int | None) -> list[RowSpec]:
    """The row specs with their scale's CPU thread count replaced by ``--threads`` when given
    (checked like every ``--threads``: ``infra.threads.threads_for``)."""
    if threads is None:
        return specs
    from infra.threads import threads_for

    pinned = threads_for(threads, "cpu")
    return [dataclasses.replace(s, scale=dataclasses.replace(s.scale, threads=pinned)) for s in specs]


def _add_jobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes training seeds in parallel, one thread each (default: the number of "
        "cores); the numbers do not depend on it",
    )


def _load(path: Path) -> list[Baseline]:
    from realdata.baselines.format import load_baselines

    return load_baselines(path)


def _chosen(
    items: Sequence[tuple[str, str, Any]], scales: Sequence[str] | None, rows: Sequence[str] | None, what: str
) -> list[Any]:
    """The items (given as (row id, scale name, item)) picked by --scale or --rows, in order."""
    if rows:
        ids = [row_id for row_id, _, _ in items]
        unknown = [r for r in rows if r not in ids]
        if unknown:
            raise UsageError(f"--rows: unknown {what} {unknown}; expected some of {ids}")
        return [item for row_id, _, item in items if row_id in rows]
    return [item for _, scale, item in items if not scales or scale in scales]


def _datasets(
    specs: Sequence[RowSpec], data_root: Path | None, skip_missing: bool = False
) -> tuple[dict[str, DatasetSplits], dict[str, str]]:
    """Each dataset the rows need, loaded once (before any training starts), and the reason
    for each one that could not be loaded when ``skip_missing`` (else that is a UsageError)."""
    loaded, missing = {}, {}
    from realdata.baselines.measure import datasets_needed
    from realdata.data import DataOptions, load_dataset

    for name in datasets_needed(specs):
        try:
            loaded[name] = load_dataset(name, DataOptions(data_root=data_root))
        except UsageError as exc:
            if not skip_missing:
                raise UsageError(str(exc)) from exc
            missing[name] = f"dataset {name} unavailable: {exc}"
    return loaded, missing


def _fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    value = round(value, digits) + 0.0  # no "-0.00" for a rounding-sized difference
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def print_frame(frame: pd.DataFrame) -> None:
    """Print a table of strings, every column left-aligned."""
    formatters = {c: (lambda v, w=max([len(c), *map(len, frame[c])]): f"{v:<{w}}") for c in frame.columns}
    print(frame.to_string(index=False, justify="left", formatters=formatters))


def print_gate_table(rows: Sequence[dict[str, Any]]) -> None:
    """The gate's table: row, stored, measured, delta, tolerance, verdict, reason."""
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "row_id": r["row_id"],
                "stored": _fmt(r["stored"]),
                "measured": _fmt(r["measured"]),
                "delta": _fmt(r["delta"], signed=True),
                "tolerance": _fmt(r["tolerance"]),
                "verdict": r["verdict"],
                "reason": r["reason"],
            }
            for r in rows
        ],
        columns=TABLE_COLUMNS,
    )
    print_frame(frame)
    counts = frame["verdict"].value_counts().to_dict()
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def run_check(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml baselines check`` (the regression gate)."""
    import pandas as pd

    from infra.provenance import provenance
    from infra.store import require_writable, write_table
    from infra.workers import require_jobs
    from realdata.baselines.format import Measured, check_row, gate_failed
    from realdata.baselines.measure import measure_rows, row_spec

    if args.out.suffix != ".csv":
        raise UsageError(f"--out: expected a .csv path, got {args.out}")
    require_writable(args.out, "--out", folder=False)
    jobs = require_jobs(args.jobs)
    stored = _load(args.baselines)
    measured_rows = [r for r in stored if not r.is_reference]
    chosen = _chosen([(r.row_id, r.scale, r) for r in measured_rows], args.scale, args.rows, "row")
    if not chosen:
        raise UsageError(
            f"{args.baselines}: no measured rows to check"
            + (f" for --scale {args.scale}" if args.scale else "")
            + "; expected rows made by `sharpmaml baselines update --scale ci`"
        )
    specs = _with_threads([row_spec(row, args.baselines) for row in chosen], args.threads)
    skips = [spec.scale.unavailable() for spec in specs]
    _, missing = _datasets(  # loaded here to stop before any compute; each worker loads its own
        [s for s, skip in zip(specs, skips) if not skip], args.data_root, args.skip_missing_data
    )
    skips = [skip or missing.get(spec.config.preset.dataset, "") for spec, skip in zip(specs, skips)]
    print(
        f"regression gate: {sum(not s for s in skips)} rows to re-run, "
        f"{sum(bool(s) for s in skips)} skipped, {len(stored) - len(measured_rows)} reference rows "
        f"(paper and study rows, not checked); baselines {args.baselines}; {jobs} worker processes",
        flush=True,
    )
    started = time.perf_counter()
    prov = provenance()
    results: list[dict[str, Any] | None] = [None] * len(chosen)

    def done(i: int, result: dict[str, Any]) -> None:
        results[i] = result
        print(
            f"[{sum(r is not None for r in results)}/{len(chosen)}] {chosen[i].row_id}: {result['verdict']} "
            f"(stored {_fmt(result['stored'])}, measured {_fmt(result['measured'])}, tolerance "
            f"{_fmt(result['tolerance'])}; {_fmt(result['elapsed_s'], 0)} s of worker time)",
            flush=True,
        )

    for i, (row, skip) in enumerate(zip(chosen, skips)):
        if skip:
            done(i, {**check_row(row, None, skip), "device": ""})
    rerun = [i for i, skip in enumerate(skips) if not skip]

    def checked(k: int, measured: Measured) -> None:
        done(rerun[k], {**check_row(chosen[rerun[k]], measured), "device": measured.device})

    measure_rows([specs[i] for i in rerun], args.data_root, jobs=jobs, on_row=checked)
    results = [
        {
            **result,
            "stored_device": row.device,
            "stored_git_sha": row.git_sha,
            "git_sha": prov["git_sha"],
            "versions": prov["versions"],
            "date": prov["date"],
        }
        for row, result in zip(chosen, results)
    ]
    print_gate_table(results)  # shown before it is written: a failed write loses no result
    write_table(pd.DataFrame(results), args.out)
    print(f"gate table written to {args.out} ({time.perf_counter() - started:.0f} s)")
    return 1 if gate_failed(results) else 0


def run_update(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml baselines update``."""
    from infra.csvtable import refuse_update_in_ci, text_diff
    from infra.store import require_writable
    from infra.workers import require_jobs
    from realdata.baselines.format import Measured, render_baselines, replace_rows, write_baselines
    from realdata.baselines.measure import baseline_row, defined_rows, measure_rows

    refuse_update_in_ci("baselines", "baselines move only by a deliberate local update, reviewed in its diff")
    jobs = require_jobs(args.jobs)
    path: Path = args.baselines
    if not args.dry_run:
        require_writable(path, "--baselines", folder=False)
    old = _load(path) if path.exists() else []
    specs = [spec for scale in BASELINE_SCALES.values() for spec in defined_rows(scale)]
    chosen = _chosen([(s.row_id, s.scale.name, s) for s in specs], args.scale, args.rows, "row of a scale")
    chosen = _with_threads(chosen, args.threads)
    unavailable = sorted({s.scale.unavailable() for s in chosen} - {""})
    if unavailable:
        raise UsageError("; ".join(unavailable))
    _datasets(chosen, args.data_root)  # stop before any compute if one is missing
    for scale in dict.fromkeys(spec.scale for spec in chosen):
        print(
            f"measuring {sum(s.scale == scale for s in chosen)} rows of scale {scale.name}: "
            f"{scale.description}; seeds {' '.join(map(str, scale.spread_seeds))}",
            flush=True,
        )
    measured: dict[int, Measured] = {}

    def done(i: int, row: Measured) -> None:
        measured[i] = row
        print(
            f"[{len(measured)}/{len(chosen)}] {chosen[i].row_id}: "
            + (
                row.failure
                if row.failure
                else f"{row.accuracy:.2f} +- {row.ci95:.2f} % over seeds {' '.join(map(str, row.seeds))}; "
                f"seed spread {_fmt(row.seed_std)} over seeds {' '.join(map(str, row.spread_seeds))}"
            )
            + f" ({row.elapsed_s:.0f} s of worker time)",
            flush=True,
        )

    measure_rows(chosen, args.data_root, jobs=jobs, spread=True, on_row=done, action="baselines update")
    failures = [
        f"{spec.row_id}: {measured[i].failure}" for i, spec in enumerate(chosen) if measured[i].failure
    ]
    if failures:
        print(f"{'; '.join(failures)}; {path} left as it is")
        return 1
    new = [baseline_row(spec, measured[i]) for i, spec in enumerate(chosen)]
    before = render_baselines(old) if path.exists() else ""
    rows = replace_rows(old, new)
    diff = text_diff(before, render_baselines(rows), path)
    if diff:
        print(diff, end="")
    else:
        print(f"no change to {path}")
    defined = {s.row_id for s in specs}
    stale = [r.row_id for r in rows if not r.is_reference and r.row_id not in defined]
    if stale:
        print(f"kept rows that no scale defines any more (delete them by hand if obsolete): {stale}")
    if args.dry_run:
        print(f"--dry-run: {path} left as it is")
    elif diff:
        write_baselines(path, rows)
        print(f"wrote {path}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml baselines show``."""
    import pandas as pd

    rows = [r for r in _load(args.baselines) if not args.scale or r.scale in args.scale]
    frame = pd.DataFrame(
        [
            {
                "row_id": r.row_id,
                "accuracy": f"{r.accuracy:.2f}",
                "ci95": _fmt(r.ci95),
                "seed_std": _fmt(r.seed_std),
                "seeds": " ".join(map(str, r.seeds)) or "-",
                "tolerance": "-" if r.is_reference else f"{r.tolerance():.2f}",
                "source": r.source,
            }
            for r in rows
        ]
    )
    if len(frame):
        print_frame(frame)
    else:
        print(f"no rows in {args.baselines}")
    return 0
