"""Optional download of Lake's Omniglot zips into ``<data root>/omniglot``, with digest checks.

Only for machines that are online; nothing else in the package touches the network. Each file
is streamed into a temporary file next to its destination while its digests are computed,
and renamed into place only if they match (``infra.store.atomic_writer``).
The check needs a sha256: ``KNOWN_DIGESTS`` has none recorded for Lake's zips (they were never
verified here), so pass them with ``--sha256 NAME=HEX``; the published md5s (the ones
torchvision checks) are verified too. A file that fails a check is deleted, never kept.

    python -m realdata.datasets.download --data-root DIR \\
        --sha256 images_background.zip=<hex> --sha256 images_evaluation.zip=<hex>
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from infra.cli import Parser, with_flags
from infra.errors import EXIT_USAGE, UsageError
from infra.store import atomic_writer
from realdata.datasets.errors import DatasetError
from realdata.datasets.locate import (
    DATA_ENV,
    OMNIGLOT_DIR,
    default_data_root,
    find_data_root,
    require_omniglot_root,
)
from realdata.datasets.omniglot import find_omniglot_sources

BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"


@dataclass(frozen=True)
class KnownDigest:
    """Digests recorded for a file; None where none is known."""

    sha256: str | None
    md5: str | None


KNOWN_DIGESTS: dict[str, KnownDigest] = {
    "images_background.zip": KnownDigest(sha256=None, md5="68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation.zip": KnownDigest(sha256=None, md5="6b91aef0f799c5bb55b94e3f2daec811"),
}

Opener = Callable[[str], BinaryIO]


def _expected_sha256(name: str, sha256: str | None) -> str:
    expected = (sha256 or KNOWN_DIGESTS.get(name, KnownDigest(None, None)).sha256 or "").lower()
    if not expected:
        raise DatasetError(
            f"{name}: no sha256 is known for this file, so it cannot be verified; pass its digest "
            f"in `sha256` ({name}=<hex>) from a source you trust"
        )
    return expected


def _copy_hashing(source: BinaryIO, sink: BinaryIO | None = None) -> tuple[str, str]:
    """Read ``source`` to the end (copying it into ``sink`` if given); its (sha256, md5) hex."""
    h_sha, h_md5 = hashlib.sha256(), hashlib.md5()
    for chunk in iter(lambda: source.read(1 << 20), b""):
        h_sha.update(chunk)
        h_md5.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return h_sha.hexdigest(), h_md5.hexdigest()


def _check_digests(where: object, name: str, expected: str, digests: tuple[str, str]) -> None:
    sha, md5 = digests
    if sha != expected:
        raise DatasetError(f"{where}: sha256 {sha}; expected {expected} for {name}")
    known = KNOWN_DIGESTS.get(name, KnownDigest(None, None))
    if known.md5 is not None and md5 != known.md5:
        raise DatasetError(f"{where}: md5 {md5}; expected the published {known.md5}")


def verify_file(path: Path, name: str, sha256: str | None = None) -> None:
    """Raise DatasetError unless ``path`` matches the sha256 (given or known) and any known md5."""
    expected = _expected_sha256(name, sha256)
    with open(path, "rb") as f:
        _check_digests(path, name, expected, _copy_hashing(f))


def download_file(
    url: str, dest: Path, *, sha256: str | None = None, opener: Opener = urllib.request.urlopen
) -> Path:
    """Fetch ``url`` to ``dest`` atomically once verified (else DatasetError, nothing kept)."""
    dest = Path(dest)
    expected = _expected_sha256(dest.name, sha256)  # fail before fetching anything
    try:
        with atomic_writer(dest) as out, opener(url) as response:
            _check_digests(url, dest.name, expected, _copy_hashing(response, out))
    except OSError as exc:
        raise DatasetError(f"{url}: download failed ({exc}); expected a reachable URL") from exc
    return dest


def download_omniglot(
    data_root: Path,
    sha256: dict[str, str] | None = None,
    *,
    base_url: str = BASE_URL,
    opener: Opener = urllib.request.urlopen,
) -> Path:
    """Download the sets missing (in any form) from ``<data_root>/omniglot``; return it."""
    folder = Path(data_root) / OMNIGLOT_DIR
    for name in KNOWN_DIGESTS:
        stem = name.removesuffix(".zip")
        if not any(p.exists() for p in (folder / name, folder / stem, folder / f"{stem}.npz")):
            download_file(base_url + name, folder / name, sha256=(sha256 or {}).get(name), opener=opener)
    return folder


def ensure_omniglot(
    data_root: Path | None = None, *, download: bool = False, sha256: dict[str, str] | None = None
) -> Path:
    """The Omniglot folder; with ``download=True`` fetch the zips when no sources are there.

    Without ``download`` a missing folder raises the DatasetError that says where to put it.
    """
    root = Path(data_root) if data_root is not None else find_data_root()
    if root is not None and (root / OMNIGLOT_DIR).is_dir():
        try:
            find_omniglot_sources(root / OMNIGLOT_DIR)
            return root / OMNIGLOT_DIR
        except DatasetError:
            if not download:
                raise
    if not download:
        return require_omniglot_root(root)
    return download_omniglot(root if root is not None else default_data_root(), sha256)


def parse_sha_arguments(items: Sequence[str]) -> dict[str, str]:
    """``NAME=HEX`` command-line items -> {file name: sha256}, validated (CLI and downloader)."""
    out = {}
    for item in items:
        name, sep, digest = item.partition("=")
        if not sep or name not in KNOWN_DIGESTS or len(digest) != 64:
            raise DatasetError(
                f"--sha256 {item!r}: expected NAME=HEX with NAME one of "
                f"{', '.join(KNOWN_DIGESTS)} and a 64-digit hex digest"
            )
        out[name] = digest
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: download Omniglot into the data root."""
    parser = Parser(prog="python -m realdata.datasets.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help=f"default: ${DATA_ENV} or ../shared/data")
    parser.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX")
    parser.add_argument("--base-url", default=BASE_URL)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    root = args.data_root or (default_data_root() if os.environ.get(DATA_ENV) else find_data_root())
    try:
        if root is None:
            raise DatasetError(f"no data root: pass --data-root or set ${DATA_ENV}")
        folder = download_omniglot(root, parse_sha_arguments(args.sha256), base_url=args.base_url)
    except DatasetError as exc:
        print(f"error: {with_flags(str(exc), parser)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Omniglot zips in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
