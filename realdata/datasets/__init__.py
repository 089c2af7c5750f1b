"""Few-shot datasets: Omniglot and Mini-ImageNet readers, on-disk cache, episode sampling.

Typical use::

    from realdata.datasets import load_omniglot, EpisodeSampler, fixed_test_episodes

    splits = load_omniglot()                      # <data root>/omniglot, cached after first run
    train = EpisodeSampler(splits.train, ways=5, shots=1, queries=15, seed=seed)
    batch = train.sample_batch(32)                # harness.tasks.TaskBatch
    test = fixed_test_episodes(splits.test, 5, 1, 15)   # 1000 episodes, same for every method
    for batch in test.batches(50): ...

See docs/datasets.md.
"""

from realdata.datasets.cache import ClassImages, DatasetSplits
from realdata.datasets.download import download_omniglot, ensure_omniglot, verify_file
from realdata.datasets.episode_folders import FolderEpisode, read_episode_folder, read_episode_folders
from realdata.datasets.episodes import (
    Episode,
    EpisodeSampler,
    FixedEpisodes,
    fixed_test_episodes,
)
from realdata.datasets.errors import DatasetError
from realdata.datasets.locate import (
    cache_dir,
    find_data_root,
    require_miniimagenet_root,
    require_omniglot_root,
)
from realdata.datasets.miniimagenet import (
    load_miniimagenet,
    miniimagenet_layout,
    read_miniimagenet_csv,
    read_miniimagenet_pickle,
)
from realdata.datasets.omniglot import (
    OmniglotChars,
    OmniglotSettings,
    load_omniglot,
    omniglot_class_images,
    read_omniglot,
)
from realdata.datasets.preprocess import preprocess_image

__all__ = [
    "ClassImages",
    "DatasetError",
    "DatasetSplits",
    "Episode",
    "EpisodeSampler",
    "FixedEpisodes",
    "FolderEpisode",
    "OmniglotChars",
    "OmniglotSettings",
    "cache_dir",
    "download_omniglot",
    "ensure_omniglot",
    "find_data_root",
    "fixed_test_episodes",
    "load_miniimagenet",
    "load_omniglot",
    "miniimagenet_layout",
    "omniglot_class_images",
    "preprocess_image",
    "read_episode_folder",
    "read_episode_folders",
    "read_miniimagenet_csv",
    "read_miniimagenet_pickle",
    "read_omniglot",
    "require_miniimagenet_root",
    "require_omniglot_root",
    "verify_file",
]
