"""``sharpmaml train`` and ``sharpmaml evaluate``: the real-data track's commands.

Bad flags and missing data exit with code 4 and a message naming the flag (or the folder)
and what was expected, before any compute; a diverged training run exits with 1. Each flag's
``dest`` is the library's name of the field, so ``infra.cli`` can name the flag in its errors. An internal error names
the run or checkpoint (``infra.errors.stage``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import METHODS
from infra.errors import UsageError, stage
from infra.threads import DEFAULT_CPU_THREADS, add_threads_argument, cpu_threads
from realdata.defaults import (
    CHECKPOINT_MINUTES,
    DEFAULT_EVAL_INNER_LOOP,
    DEFAULT_TEST_EPISODES,
    EPISODES_ROOT,
    EVAL_BATCH,
    MAX_EVAL_BATCH,
    MAX_TEST_EPISODES,
    RESULTS_TABLE,
    RUNS_ROOT,
)
from realdata.presets import EVAL_INNER_LOOPS, PRESETS, parse_overrides, preset_changes, train_config
from realdata.splits import DATASET_SPLITS

if TYPE_CHECKING:
    from realdata.data import DataOptions
    from realdata.presets import TrainConfig


def register_train(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``sharpmaml`` command."""
    tr = subparsers.add_parser(
        "train",
        help="meta-train Conv4 on Omniglot / Mini-ImageNet with one method",
        description="Meta-train with a preset of the paper's settings (docs/realdata.md).",
    )
    tr.add_argument("--preset", required=True, choices=list(PRESETS))
    tr.add_argument("--method", required=True, choices=list(METHODS))
    tr.add_argument(
        "--alpha-low",
        type=float,
        metavar="A",
        help="lower (inner-loop) radius; default: the preset's alpha for sharp_low/sharp_both, else 0",
    )
    tr.add_argument(
        "--alpha-up",
        type=float,
        metavar="A",
        help="upper (meta-level) radius; default: the preset's alpha for sharp_up/sharp_both, else 0",
    )
    tr.add_argument("--iterations", type=int, metavar="N", help="default: the preset's")
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="change a preset setting, e.g. --set ways=20 --set split=lake (repeatable; "
        "validated like the presets, stored in the run's config)",
    )
    tr.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed: initial parameters and training episodes (default 0)",
    )
    tr.add_argument(
        "--stop-at",
        type=int,
        metavar="N",
        help="save and stop after iteration N (continue later with --resume)",
    )
    tr.add_argument(
        "--out",
        dest="run_dir",
        type=Path,
        metavar="DIR",
        help=f"run folder (default {RUNS_ROOT}/<preset>-<method>-lo<a>-up<a>-s<seed>)",
    )
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    tr.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=CHECKPOINT_MINUTES,
        metavar="M",
        help=f"also write last.pt after M minutes of wall time since the last one (default "
        f"{CHECKPOINT_MINUTES:g}); SIGINT/SIGTERM write it after the current iteration",
    )
    _add_common(tr)
    tr.add_argument(
        "--download", action="store_true", help="download Lake's Omniglot zips if absent (needs --sha256)"
    )
    tr.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="NAME=HEX",
        help="expected digest of a downloaded zip (repeat per file)",
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(handler=run_train, resume_hint=train_resume_hint)


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``sharpmaml`` command."""
    ev = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on the fixed test episodes (mean, 95%% CI)",
        description="Evaluate a checkpoint on the fixed, seeded meta-test episodes shared by "
        "every method; append one row to a results table.",
    )
    ev.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="best.pt or last.pt of a run folder")
    ev.add_argument(
        "--episodes",
        dest="n_episodes",
        type=int,
        default=DEFAULT_TEST_EPISODES,
        metavar="N",
        help=f"test episodes, 600 to {MAX_TEST_EPISODES} (default {DEFAULT_TEST_EPISODES})",
    )
    ev.add_argument(
        "--test-seed",
        type=int,
        metavar="S",
        help="seed of the test episodes (default: the shared DEFAULT_SEED)",
    )
    ev.add_argument(
        "--batch-size",
        type=int,
        default=EVAL_BATCH,
        metavar="B",
        help=f"episodes adapted at a time, at most {MAX_EVAL_BATCH} (default {EVAL_BATCH})",
    )
    ev.add_argument(
        "--out",
        dest="results",
        type=Path,
        metavar="TABLE",
        help=f"results table to append to, .parquet or .csv (default {RESULTS_TABLE}); with "
        f"--episodes-from the per-episode table, written anew (default {EPISODES_ROOT}/<DIR name>.parquet) "
        "next to its <name>-predictions table",
    )
    ev.add_argument(
        "--episodes-from",
        type=Path,
        metavar="DIR",
        help="score your own episodes instead: DIR/<episode>/support/<label>/<image> and "
        "DIR/<episode>/query/<label>/<image> (docs/realdata.md)",
    )
    ev.add_argument(
        "--split",
        choices=sorted({s for splits in DATASET_SPLITS.values() for s in splits}),
        help="evaluate on the meta-test part of this named split (default: the checkpoint's)",
    )
    ev.add_argument(
        "--allow-overlap",
        action="store_true",
        help="evaluate even when the split's test characters were seen in training",
    )
    _add_common(ev, eval_default=None)
    ev.set_defaults(handler=run_evaluate, resume_hint=_evaluate_resume_hint)


def _add_common(parser: argparse.ArgumentParser, eval_default: str | None = DEFAULT_EVAL_INNER_LOOP) -> None:
    add_threads_argument(
        parser, f"{DEFAULT_CPU_THREADS} on the CPU, measured fastest (docs/realdata.md); torch's own on a GPU"
    )
    parser.add_argument(
        "--eval-inner-loop",
        choices=EVAL_INNER_LOOPS,
        default=eval_default,
        help="test-time adaptation: 'same' as training (with the lower "
        "perturbation for sharp_low/sharp_both) or 'plain' gradient steps"
        + (f" (default {eval_default}, docs/realdata.md)" if eval_default else "; default: the run's choice"),
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument(
        "--data-root",
        type=Path,
        metavar="PATH",
        help="folder holding omniglot/ and miniimagenet/ (default: $SHARPMAML_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read Mini-ImageNet pickle files (they can run code: trusted files only)",
    )


def _pinned_threads(args: argparse.Namespace) -> int | None:
    """The intra-op thread count ``--threads`` asks for on this command's device (checked before
    any compute; ``infra.threads.threads_for``)."""
    from infra.threads import threads_for
    from realdata.device import resolve_device

    return threads_for(args.threads, resolve_device(args.device).type)


def _data_options(args: argparse.Namespace, dataset: str) -> DataOptions:
    from realdata.data import DataOptions
    from realdata.datasets.download import parse_sha_arguments

    download = getattr(args, "download", False)
    sha = getattr(args, "sha256", [])
    if sha and not download:
        raise UsageError("--sha256: only used with --download; expected --download as well")
    if args.allow_pickle and dataset != "miniimagenet":
        raise UsageError(f"--allow-pickle: only Mini-ImageNet has pickle files; this preset uses {dataset}")
    return DataOptions(
        data_root=args.data_root,
        download=download,
        sha256=parse_sha_arguments(sha) if sha else None,
        allow_pickle=args.allow_pickle,
    )


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return train_config(
        args.preset,
        args.method,
        alpha_low=args.alpha_low,
        alpha_up=args.alpha_up,
        iterations=args.iterations,
        seed=args.seed,
        eval_inner_loop=args.eval_inner_loop,
        overrides=parse_overrides(args.overrides),
    )


def _continue_command(config: TrainConfig, run_dir: Path) -> str:
    """The command that resumes the run in ``run_dir`` to its full iteration budget."""
    return (
        f"sharpmaml train --preset {config.preset.name} --method {config.method} "
        f"--alpha-low {config.alpha_low:g} --alpha-up {config.alpha_up:g} "
        f"--seed {config.seed} --iterations {config.preset.iterations} "
        f"--eval-inner-loop {config.eval_inner_loop} --out {run_dir} --resume"
        + "".join(f" --set {k}={v}" for k, v in preset_changes(config.preset).items())
    )


def train_resume_hint(args: argparse.Namespace) -> str:
    """The line an interrupted ``train`` ends with: the resume command if ``last.pt`` exists."""
    from harness.config import ConfigError
    from realdata.train import LAST, default_run_dir

    try:
        config = _train_config(args)
    except ConfigError:
        return "nothing was trained"
    run_dir = args.run_dir if args.run_dir is not None else default_run_dir(config)
    if not (run_dir / LAST).is_file():
        return f"no checkpoint was written yet ({run_dir / LAST} absent); run the same command again"
    return f"{run_dir / LAST} holds the last iteration; continue with: {_continue_command(config, run_dir)}"


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml train``."""
    from realdata.train import train

    config = _train_config(args)
    with cpu_threads(_pinned_threads(args)), stage(f"train run {config.run_name}"):
        result = train(
            config,
            args.run_dir,
            device=args.device,
            resume=args.resume,
            stop_at=args.stop_at,
            data_options=_data_options(args, config.preset.dataset),
            progress=not args.no_progress,
            checkpoint_minutes=args.checkpoint_minutes,
        )
    best = (
        f"best validation accuracy {100 * result.best_val_accuracy:.2f} % at iteration "
        f"{result.best_iteration}"
        if result.best_iteration
        else "no validation yet"
    )
    print(
        f"{config.run_name}: {result.status} at iteration {result.iteration} "
        f"({result.elapsed_s:.0f} s); {best}"
    )
    print(f"run folder: {result.run_dir}")
    if result.status == "diverged":
        saved = (
            f"{result.last_checkpoint} holds iteration {result.checkpoint_iteration}, the last "
            "checkpoint before it"
            if result.checkpoint_iteration is not None
            else "no checkpoint was written before it"
        )
        print(f"the meta-loss became non-finite at iteration {result.iteration}; {saved}")
        return 1
    if result.status == "stopped":
        print(f"continue with: {_continue_command(config, result.run_dir)}")
    else:
        print(f"evaluate with: sharpmaml evaluate {result.best_checkpoint}")
    return 0


def run_episodes_from(args: argparse.Namespace) -> int:
    """``sharpmaml evaluate CHECKPOINT --episodes-from DIR``: score the user's episodes."""
    from realdata.episodes_from import format_scores, predictions_path, score_episodes

    for flag, given in (
        ("--split", args.split),
        ("--test-seed", args.test_seed),
        ("--allow-overlap", args.allow_overlap),
    ):
        if given:
            raise UsageError(
                f"{flag}: not used with --episodes-from (the episodes are yours); expected it omitted"
            )
    out = _evaluate_out(args)
    with cpu_threads(_pinned_threads(args)), stage(f"evaluate {args.checkpoint} on {args.episodes_from}"):
        score_episodes(
            args.checkpoint,
            args.episodes_from,
            eval_inner_loop=args.eval_inner_loop,
            device=args.device,
            results=out,
            show=lambda scores: print(format_scores(scores), flush=True),
        )
    print(f"per-episode accuracy: {out}; predictions: {predictions_path(out)}")
    return 0


def _evaluate_resume_hint(args: argparse.Namespace) -> str:
    """The line an interrupted ``evaluate`` ends with: nothing was written."""
    if args.episodes_from is not None:
        return f"no table written to {_evaluate_out(args)}"
    return f"no row appended to {_evaluate_out(args)}"


def _evaluate_out(args: argparse.Namespace) -> Path:
    """The table ``evaluate`` writes: ``--out``, else the default of its mode."""
    if args.results is not None:
        return args.results
    if args.episodes_from is not None:
        return EPISODES_ROOT / f"{args.episodes_from.resolve().name}.parquet"
    return RESULTS_TABLE


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``sharpmaml evaluate``."""
    from realdata.data import DataOptions
    from realdata.evaluate import evaluate_checkpoint, format_row

    if args.episodes_from is not None:
        return run_episodes_from(args)
    results = _evaluate_out(args)
    extra = {} if args.test_seed is None else {"test_seed": args.test_seed}
    with cpu_threads(_pinned_threads(args)), stage(f"evaluate {args.checkpoint}"):
        evaluate_checkpoint(
            args.checkpoint,
            n_episodes=args.n_episodes,
            eval_inner_loop=args.eval_inner_loop,
            device=args.device,
            batch_size=args.batch_size,
            results=results,
            progress=True,
            data_options=DataOptions(data_root=args.data_root, allow_pickle=args.allow_pickle),
            show=lambda row: print(format_row(row), flush=True),
            split=args.split,
            allow_overlap=args.allow_overlap,
            **extra,
        )
    print(f"row appended to {results}")
    return 0
