"""``sharpmaml info``: the methods, the environment and the provenance stamped on results."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="methods, versions and device")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from harness.config import METHODS
    from infra.provenance import provenance

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print("methods:")
    for name, text in METHODS.items():
        print(f"  {name:11s} {text}")
    for key, value in provenance(device).items():
        print(f"{key}: {value}")
    return 0
