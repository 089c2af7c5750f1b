"""N-way K-shot episodes and the fixed meta-test episodes.

Episode ``index`` of stream ``stream`` under ``seed`` is drawn from its own generator,
``infra.seeding.generator(seed, "episode", stream, index)``: it is the same whether 10 or 1000
episodes are generated, in whatever batches, by whichever method. In an episode: N classes are
drawn without replacement in random order (the order is the class -> label map, label i = i-th
drawn class), then K + Q distinct images of each class (the first K support, the rest query).
Support and query are grouped by label: y = 0..0, 1..1, ...; images are float32 in [0, 1].
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from harness.config import require_int
from harness.tasks import TaskBatch
from infra.seeding import DEFAULT_SEED, generator
from realdata.datasets.cache import ClassImages
from realdata.datasets.errors import DatasetError
from realdata.defaults import DEFAULT_TEST_EPISODES, MIN_TEST_EPISODES


class Episode(NamedTuple):
    """One task: ``support`` = (x (N*K, C, H, W) float32, y (N*K,) int64), ``query`` likewise."""

    support: tuple[torch.Tensor, torch.Tensor]
    query: tuple[torch.Tensor, torch.Tensor]


def _check_shape(class_images: ClassImages, ways: int, shots: int, queries: int) -> None:
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        require_int(value, name, minimum=1)
    if ways > class_images.num_classes:
        raise DatasetError(
            f"ways: {ways}-way episodes need {ways} classes; this split has only {class_images.num_classes}"
        )
    if shots + queries > class_images.examples_per_class:
        raise DatasetError(
            f"shots + queries: {shots} + {queries} distinct images per class needed; this split "
            f"has only {class_images.examples_per_class} per class"
        )


def episode_indices(
    num_classes: int, per_class: int, ways: int, take: int, seed: int, stream: str, index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes (ways,), examples (ways, take)) of episode ``index``: its own seeded generator."""
    g = generator(seed, "episode", stream, int(index))
    classes = torch.randperm(num_classes, generator=g)[:ways]
    examples = torch.stack([torch.randperm(per_class, generator=g)[:take] for _ in range(ways)])
    return classes, examples


def _gather(
    class_images: ClassImages, classes: torch.Tensor, examples: torch.Tensor, shots: int
) -> TaskBatch:
    """Batch of tasks from classes (B, N) and examples (B, N, K+Q)."""
    device = class_images.images.device
    classes, examples = classes.to(device), examples.to(device)
    # (B, N, K+Q, C, H, W) float32 in [0, 1]
    x = class_images.images[classes[..., None], examples].float().div_(255.0)
    b, n, m = examples.shape
    labels = torch.arange(n, device=device)[None, :, None].expand(b, n, m)

    def part(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = x[:, :, sl], labels[:, :, sl]
        return xs.reshape(b, -1, *x.shape[3:]), ys.reshape(b, -1).contiguous()

    return TaskBatch(support=part(slice(0, shots)), query=part(slice(shots, m)))


class EpisodeSampler:
    """Deterministic stream of N-way K-shot episodes (Q queries per class) from one split.

    ``sample_batch`` takes the next ``num_tasks`` episode indices of the stream (starting at
    ``start``); ``next_index`` is all the state needed to resume.
    """

    def __init__(
        self,
        class_images: ClassImages,
        ways: int,
        shots: int,
        queries: int,
        seed: int,
        *,
        stream: str = "train",
        start: int = 0,
    ) -> None:
        _check_shape(class_images, ways, shots, queries)
        self.class_images = class_images
        self.ways, self.shots, self.queries = ways, shots, queries
        self.seed, self.stream = int(seed), stream
        self.next_index = int(start)

    def indices(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(classes (N,), examples (N, K+Q)) of episode ``index``."""
        ci = self.class_images
        return episode_indices(
            ci.num_classes,
            ci.examples_per_class,
            self.ways,
            self.shots + self.queries,
            self.seed,
            self.stream,
            index,
        )

    def batch(self, indices: Sequence[int]) -> TaskBatch:
        """The episodes with these indices as a TaskBatch (does not move the stream)."""
        if len(indices) < 1:
            raise DatasetError("indices: expected at least one episode index")
        pairs = [self.indices(i) for i in indices]
        classes = torch.stack([c for c, _ in pairs])
        examples = torch.stack([e for _, e in pairs])
        return _gather(self.class_images, classes, examples, self.shots)

    def episode(self, index: int) -> Episode:
        """Episode ``index`` alone, without the task dimension."""
        task = self.batch([index]).task(0)
        return Episode(support=task[0], query=task[1])

    def sample_batch(self, num_tasks: int) -> TaskBatch:
        """The next ``num_tasks`` episodes: support (B, N*K, C, H, W), (B, N*K); query likewise."""
        require_int(num_tasks, "num_tasks", minimum=1)
        start = self.next_index
        self.next_index += num_tasks
        return self.batch(range(start, start + num_tasks))


@dataclass(frozen=True)
class FixedEpisodes:
    """A fixed, seeded set of evaluation episodes: ``classes`` (E, N), ``examples`` (E, N, K+Q)."""

    class_images: ClassImages
    shots: int
    classes: torch.Tensor
    examples: torch.Tensor

    def __len__(self) -> int:
        return self.classes.shape[0]

    def batches(self, batch_size: int) -> Iterator[TaskBatch]:
        """The episodes in order, ``batch_size`` tasks at a time (the last batch may be smaller)."""
        require_int(batch_size, "batch_size", minimum=1)
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield _gather(self.class_images, self.classes[start:stop], self.examples[start:stop], self.shots)

    def fingerprint(self) -> str:
        """sha256 of the class names and image indices of every episode (record it with results)."""
        h = hashlib.sha256()
        h.update("\n".join(self.class_images.class_ids).encode())
        h.update(f"|{self.shots}|".encode())
        h.update(self.classes.numpy().astype("<i8").tobytes())
        h.update(self.examples.numpy().astype("<i8").tobytes())
        return h.hexdigest()


def fixed_test_episodes(
    class_images: ClassImages,
    ways: int,
    shots: int,
    queries: int,
    n_episodes: int = DEFAULT_TEST_EPISODES,
    seed: int = DEFAULT_SEED,
    *,
    stream: str = "test",
    allow_small: bool = False,
) -> FixedEpisodes:
    """Episodes 0..n_episodes-1 of stream ``stream``: identical across calls and methods.

    At least 600 episodes are required (1000 by default) unless ``allow_small=True`` (tests).
    The set depends on the seed, not on the training seed of the model evaluated on it.
    """
    _check_shape(class_images, ways, shots, queries)
    require_int(n_episodes, "n_episodes", minimum=1)
    if n_episodes < MIN_TEST_EPISODES and not allow_small:
        raise DatasetError(
            f"n_episodes: expected at least {MIN_TEST_EPISODES} evaluation episodes (default "
            f"{DEFAULT_TEST_EPISODES}) for a meaningful 95% CI, got {n_episodes}; pass "
            "allow_small=True only in tests"
        )
    pairs = [
        episode_indices(
            class_images.num_classes,
            class_images.examples_per_class,
            ways,
            shots + queries,
            seed,
            stream,
            i,
        )
        for i in range(n_episodes)
    ]
    return FixedEpisodes(
        class_images,
        shots,
        torch.stack([c for c, _ in pairs]),
        torch.stack([e for _, e in pairs]),
    )
