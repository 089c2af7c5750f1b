"""``sharpmaml sweep SPEC`` and ``sharpmaml study SWEEP_DIR``.

Nothing heavy (torch, pandas) is imported before the arguments are parsed: the handlers
import what they use. A bad spec, flag or folder exits 4 before any compute; a sweep with a
failed or diverged run exits 1; an interrupted one exits 2 with the command that resumes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from realdata.defaults import SWEEPS_ROOT

EXECUTORS = ("local", "slurm")
CLUSTERS = ("slurm", "local", "debug")


def register_sweep(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``sharpmaml`` command."""
    sw = subparsers.add_parser(
        "sweep",
        help="run a grid of training runs (methods x radii x seeds) from a TOML spec",
        description="Expand a sweep spec into runs (train + evaluate, each in its own run folder) "
        "and execute them on a local process pool or on SLURM; rerunning the same command "
        "resumes (docs/realdata.md, 'Sweeps').",
    )
    sw.add_argument("spec", type=Path, metavar="SPEC", help="the sweep spec (TOML)")
    sw.add_argument(
        "--out", type=Path, metavar="DIR", help=f"sweep folder (default {SWEEPS_ROOT}/<spec name>)"
    )
    sw.add_argument(
        "--executor", choices=EXECUTORS, default="local", help="where runs execute (default local)"
    )
    sw.add_argument(
        "--jobs", type=int, metavar="N", help="local worker processes (default: the number of cores)"
    )
    sw.add_argument(
        "--retries", type=int, default=1, metavar="N", help="restarts of a failed run per call (default 1)"
    )
    sw.add_argument(
        "--data-root",
        type=Path,
        metavar="PATH",
        help="folder holding the preset's dataset (default: the spec's [data] root, else "
        "$SHARPMAML_DATA, else ../shared/data)",
    )
    sw.add_argument("--summary", action="store_true", help="write the study tables when the sweep ends")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    slurm = sw.add_argument_group("slurm executor (override the spec's [slurm] section)")
    slurm.add_argument("--partition", metavar="NAME")
    slurm.add_argument("--gpus-per-job", type=int, metavar="N")
    slurm.add_argument("--cpus-per-job", type=int, metavar="N")
    slurm.add_argument("--time-min", type=int, metavar="MIN", help="time limit of one job, minutes")
    slurm.add_argument("--array-parallelism", type=int, metavar="N", help="jobs of the array running at once")
    slurm.add_argument(
        "--cluster",
        choices=CLUSTERS,
        help="submitit backend: slurm (default), local (subprocesses on this machine, for testing)",
    )
    sw.set_defaults(handler=run_sweep_command, resume_hint=_resume_hint)


def register_study(subparsers: argparse._SubParsersAction) -> None:
    """Add ``study`` to the ``sharpmaml`` command."""
    st = subparsers.add_parser(
        "study",
        help="paired Sharp-MAML vs MAML statistics of a finished sweep (tables + verdicts)",
        description="Per (preset, method, radii): mean test accuracy over seeds with a 95% CI, the "
        "paired difference to MAML on the same seeds, a verdict (BETTER / WORSE / NOT DETECTED) "
        "with the smallest detectable difference, and the cost (docs/realdata.md, 'Study').",
    )
    st.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="the --out folder of a sweep")
    st.add_argument("--out", type=Path, metavar="DIR", help="where the tables go (default SWEEP_DIR/study)")
    st.add_argument(
        "--store-baselines",
        metavar="SCALE",
        help="also write each setting as a reference row of scale SCALE into the baselines file",
    )
    st.add_argument(
        "--loop",
        default="same",
        choices=("same", "plain"),
        help="test-time inner loop of the stored rows (default same)",
    )
    st.add_argument("--baselines", type=Path, metavar="CSV", help="baselines file (default: the project's)")
    st.set_defaults(handler=run_study_command)


def default_sweep_dir(spec: Path) -> Path:
    return SWEEPS_ROOT / spec.stem


def _resume_hint(args: argparse.Namespace) -> str:
    out = args.out or default_sweep_dir(args.spec)
    return f"finished runs are kept; resume with: sharpmaml sweep {args.spec} --out {out} (same flags)"


def _data_root_origin(args: argparse.Namespace, spec_root: Path | None) -> str:
    """Where the sweep's data root comes from, for messages (the first of these that is set)."""
    from realdata.datasets.locate import DATA_ENV

    if args.data_root is not None:
        return "--data-root"
    if spec_root is not None:
        return f"[data] root in {args.spec}"
    if os.environ.get(DATA_ENV):
        return f"${DATA_ENV}"
    return f"the default: ${DATA_ENV} is unset"


def run_sweep_command(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml sweep``."""
    from infra.errors import UsageError
    from infra.store import require_writable
    from realdata.sweep.driver import require_data, run_sweep, summary_line
    from realdata.sweep.executors import LocalExecutor, SubmititExecutor
    from realdata.sweep.manifest import DONE
    from realdata.sweep.spec import load_spec

    spec = load_spec(args.spec)
    origin = _data_root_origin(args, spec.data_root)
    if args.data_root is not None:
        spec = dataclasses.replace(spec, data_root=args.data_root.resolve())
    out = args.out or default_sweep_dir(args.spec)
    require_writable(out, "--out", folder=True)
    flags = {
        "partition": args.partition,
        "gpus_per_job": args.gpus_per_job,
        "cpus_per_job": args.cpus_per_job,
        "time_min": args.time_min,
        "array_parallelism": args.array_parallelism,
        "cluster": args.cluster,
    }
    for name, value in flags.items():
        if isinstance(value, int) and value < (0 if name == "gpus_per_job" else 1):
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
    if args.executor == "local":
        used = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        if used:
            raise UsageError(f"{used[0]}: only used with --executor slurm")
        executor = LocalExecutor(args.jobs)
    elif args.jobs is not None:
        raise UsageError("--jobs: only used with --executor local (SLURM: --array-parallelism)")
    # Local workers read the data on this machine: load it once now. SLURM jobs read it on their
    # nodes at the same path (a shared filesystem, as submitit's job folders need): check here,
    # before submitit creates its folders, that the files are there, without reading them.
    require_data(spec, origin, read=args.executor == "local")
    if args.executor == "slurm":
        executor = SubmititExecutor(out / "jobs", spec.slurm.merged(**flags))
    tasks = spec.tasks(out)
    print(f"sweep {args.spec}: {len(tasks)} runs into {out} ({args.executor} executor)", flush=True)
    manifest = run_sweep(spec, out, executor, retries=args.retries, progress=not args.no_progress)
    print(summary_line(manifest))
    print(f"manifest: {manifest.path}")
    failed = [r for r in manifest.rows.values() if r["status"] != DONE]
    for row in failed:
        print(f"  {row['run_id']}: {row['status']} {row['error']}".rstrip())
    if args.summary and not failed:
        _write_study(out, None)
    return 1 if failed else 0


def _write_study(sweep_dir: Path, out: Path | None):  # noqa: ANN202 - tables, pandas imported lazily
    from realdata.sweep.study import STUDY_DIR, print_study, study_tables, write_study

    tables = study_tables(sweep_dir)
    print_study(tables)  # shown before it is written: a failed write loses no result
    write_study(tables, out if out is not None else sweep_dir / STUDY_DIR)
    return tables


def run_study_command(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml study``."""
    from infra.paths import DEFAULT_BASELINES
    from infra.store import require_writable
    from realdata.sweep.study import STUDY_DIR, store_baselines

    require_writable(args.out or args.sweep_dir / STUDY_DIR, "--out", folder=True)
    if args.store_baselines:
        require_writable(args.baselines or DEFAULT_BASELINES, "--baselines", folder=False)
    tables = _write_study(args.sweep_dir, args.out)
    if args.store_baselines:
        path = args.baselines or DEFAULT_BASELINES
        diff = store_baselines(args.sweep_dir, tables, args.store_baselines, args.loop, path)
        print(diff or f"{path}: unchanged")
    return 0
