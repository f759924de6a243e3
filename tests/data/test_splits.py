"""The validation set is one fixed draw (the same for every training seed and subset, disjoint from the test set and
every subset); without validation the splits are exactly those of runs made before it was fixed; a run started with
the old validation draw is refused on resume."""

from __future__ import annotations

import numpy as np
import pytest

from simseg.data.splits import given_splits, segmentation_splits, stratified_order
from simseg.errors import SimsegError
from simseg.training.rundir import check_or_save_splits


def groups_of(count: int, seed: int = 0) -> list[str]:
    """Three unequal groups (50%, 30%, 20%), shuffled."""
    labels = ["a"] * (count // 2) + ["b"] * (count * 3 // 10)
    labels += ["c"] * (count - len(labels))
    return np.random.default_rng(seed).permutation(labels).tolist()


def old_drawn_training(count, test, subset, seed, groups):
    """The training subset as drawn before the validation set was fixed (val_size 0), the formula copied."""
    rest = np.setdiff1d(np.arange(count), test)
    order = stratified_order(rest, None if groups is None else [groups[i] for i in rest],
                             np.random.default_rng([seed, 1]))
    return order[:None if subset is None else subset]


def old_given_training(given, subset, seed, groups):
    """The training subset of a given split before the validation set was fixed (val_size 0)."""
    pool = np.asarray(given["train"], dtype=np.int64)
    order = stratified_order(pool, None if groups is None else [groups[i] for i in pool],
                             np.random.default_rng([seed, 1]))
    return pool if subset is None else order[:subset]


@pytest.mark.parametrize("groups", [None, groups_of(300)])
def test_without_validation_the_splits_are_those_of_earlier_runs(groups):
    for seed in (0, 1, 7):
        for subset in (1, 25, 100, None):
            split = segmentation_splits(300, 40, subset, seed, groups, test_seed=3)
            np.testing.assert_array_equal(split["train"], old_drawn_training(300, split["test"], subset, seed, groups))
            assert split["val"].size == 0
    given = {"train": list(range(299, 39, -1)), "test": list(range(40))}
    for seed in (0, 5):
        for subset in (10, None):
            split = segmentation_splits(300, 0, subset, seed, groups, test_seed=3, given=given)
            np.testing.assert_array_equal(split["train"], old_given_training(given, subset, seed, groups))


@pytest.mark.parametrize("groups", [None, groups_of(400)])
def test_the_validation_set_is_fixed_across_seeds_and_subsets_and_disjoint_from_both(groups):
    splits = {(seed, subset): segmentation_splits(400, 50, subset, seed, groups, val_size=30, test_seed=3)
              for seed in (0, 1, 2) for subset in (10, 40, 120, None)}
    first = splits[0, 10]
    for (_, subset), split in splits.items():
        np.testing.assert_array_equal(split["test"], first["test"])
        np.testing.assert_array_equal(split["val"], first["val"])
        assert len(split["val"]) == 30 and len(split["train"]) == (320 if subset is None else subset)
        assert not set(split["val"]) & set(split["test"]) and not set(split["val"]) & set(split["train"])
        assert not set(split["test"]) & set(split["train"])
    for seed in (0, 1, 2):  # nested subsets per seed
        chain = [set(splits[seed, subset]["train"]) for subset in (10, 40, 120, None)]
        assert all(small < large for small, large in zip(chain, chain[1:]))
    assert set(splits[0, 120]["train"]) != set(splits[1, 120]["train"])  # the seed still draws the subset
    smaller = segmentation_splits(400, 50, 40, 9, groups, val_size=12, test_seed=3)["val"]
    np.testing.assert_array_equal(smaller, first["val"][:12])  # validation sets are nested too
    other = segmentation_splits(400, 50, 40, 0, groups, val_size=30, test_seed=4)
    assert not np.array_equal(other["val"], first["val"])  # the test seed draws it


def test_the_validation_set_is_stratified_by_group():
    groups = groups_of(2000)
    val = segmentation_splits(2000, 200, 100, 0, groups, val_size=100, test_seed=0)["val"]
    counts = {g: sum(groups[i] == g for i in val) for g in "abc"}
    assert all(abs(counts[g] - share * 100) <= 2 for g, share in zip("abc", (0.5, 0.3, 0.2))), counts


def test_a_given_split_gets_the_same_fixed_validation_draw():
    given = {"train": list(range(10, 110)), "test": list(range(10))}
    splits = [given_splits(110, given, subset, seed, None, val_size=8, test_seed=1)
              for seed in (0, 1) for subset in (5, 30, None)]
    for split in splits:
        np.testing.assert_array_equal(split["val"], splits[0]["val"])
        assert not set(split["val"]) & (set(split["train"]) | set(split["test"]))
    assert set(splits[0]["train"]) < set(splits[1]["train"]) < set(splits[2]["train"])
    assert splits[2]["train"].tolist() == [i for i in given["train"] if i not in set(splits[0]["val"])]
    through = segmentation_splits(110, 1000, 5, 0, None, val_size=8, test_seed=1, given=given)
    np.testing.assert_array_equal(through["val"], splits[0]["val"])  # segmentation_splits passes test_seed on


def test_a_run_started_with_the_old_validation_draw_is_refused_on_resume(tmp_path):
    """Runs made before the fixed draw took validation from the seed's order; their saved lists differ now."""
    groups = groups_of(200)
    test = segmentation_splits(200, 20, 30, 1, groups, test_seed=0)["test"]
    order = old_drawn_training(200, test, None, 1, groups)  # the old draw: val first, then the subset
    names = [f"img{i}" for i in range(200)]
    check_or_save_splits(tmp_path, {"test": [names[i] for i in test], "train": [names[i] for i in order[5:35]],
                                    "val": [names[i] for i in order[:5]]}, write=True)
    now = segmentation_splits(200, 20, 30, 1, groups, val_size=5, test_seed=0)
    with pytest.raises(SimsegError, match=f"{tmp_path / 'train_images.txt'} lists other images") as caught:
        check_or_save_splits(tmp_path, {k: [names[i] for i in v] for k, v in now.items()}, write=True)
    assert "\n" not in str(caught.value) and "start a new output_dir" in str(caught.value)
