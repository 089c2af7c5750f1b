"""``sharpmaml info``: the methods, the environment and the provenance stamped on results."""

from __future__ import annotations

import argparse

from infra.errors import stage


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="methods, versions and device")
    parser.set_defaults(handler=run, resume_hint=lambda a: "nothing was written")


def run(args: argparse.Namespace) -> int:
    import torch

    from harness.config import METHODS
    from infra.provenance import provenance

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print("methods:")
    for name, text in METHODS.items():
        print(f"  {name:11s} {text}")
    with stage("info: provenance"):
        stamp = provenance(device)
    for key, value in stamp.items():
        print(f"{key}: {value}")
    return 0
