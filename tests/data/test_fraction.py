"""Training on a fraction of the unique records (the paper's E3: m = 4 on 50%, m = 8 on 25%)."""

import grain
import numpy as np
import pytest

from neurojax.data import pipeline

N = 101


def _source(n=N):
    return pipeline.ArraySource({"id": np.arange(n), "label": np.arange(n) % 10})


def _ids(loader):
    return np.concatenate([b["id"] for b in loader]).tolist()


def _loader(**kwargs):
    kwargs = {"batch_size": 5, "seed": 1, "drop_remainder": False, **kwargs}
    return pipeline.make_loader(_source(), **kwargs)


@pytest.mark.parametrize("fraction,count", [(0.5, 50), (0.25, 25), (0.3, 30), (1 / N, 1)])
def test_keeps_round_fraction_unique_records_every_epoch(fraction, count):
    ids = _ids(_loader(fraction=fraction, num_epochs=3))
    assert len(ids) == 3 * count
    epochs = [ids[i * count : (i + 1) * count] for i in range(3)]
    assert all(len(set(e)) == count for e in epochs)  # no repeats within an epoch
    assert set(epochs[0]) == set(epochs[1]) == set(epochs[2])  # the same subset
    assert count == 1 or epochs[0] != epochs[1]  # reshuffled
    expected = sorted(np.random.default_rng(0).permutation(N)[:count].tolist())
    assert sorted(epochs[0]) == expected


def test_subset_is_fixed_by_fraction_seed_not_by_shuffle_seed():
    subset = lambda **kw: set(_ids(_loader(fraction=0.5, **kw)))  # noqa: E731
    assert subset(seed=1) == subset(seed=2) == subset(seed=3, shuffle=False)
    assert subset(fraction_seed=1) != subset(fraction_seed=0)
    assert subset(fraction_seed=1) == set(pipeline.fraction_indices(N, 0.5, 1).tolist())


def test_smaller_fractions_are_nested_in_larger_ones():
    quarter, half = (set(pipeline.fraction_indices(N, f).tolist()) for f in (0.25, 0.5))
    assert quarter < half


def test_fraction_one_leaves_the_loader_unchanged():
    assert _ids(_loader(fraction=1.0, num_epochs=2)) == _ids(_loader(num_epochs=2))


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_process_shards_partition_the_subset(drop_remainder):
    subset = set(pipeline.fraction_indices(N, 0.5).tolist())
    shards = []
    for index in range(3):
        options = grain.sharding.ShardOptions(index, 3, drop_remainder=drop_remainder)
        shards.append(_ids(_loader(fraction=0.5, shard_options=options)))
    seen = [set(s) for s in shards]
    assert all(len(s) == len(ids) for s, ids in zip(seen, shards))
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    union = seen[0] | seen[1] | seen[2]
    if drop_remainder:  # 50 records over 3 processes: 16 each, 2 dropped
        assert union < subset and len(union) == 48
        assert {len(s) for s in shards} == {16}
    else:
        assert union == subset


def test_load_passes_fraction_through(digits_dir):
    kwargs = {"batch_size": 8, "data_dir": digits_dir, "shuffle": False, "drop_remainder": False}
    full = pipeline.load("digits", "test", **kwargs)
    half = pipeline.load("digits", "test", fraction=0.5, **kwargs)
    full_images = np.concatenate([b["image"] for b in full])
    half_images = np.concatenate([b["image"] for b in half])
    assert len(full_images) == 360 and len(half_images) == 180
    kept = pipeline.fraction_indices(360, 0.5)
    np.testing.assert_array_equal(half_images, full_images[kept])  # unshuffled: sorted subset


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": float("nan")}, "fraction"),
        ({"fraction": True}, "fraction"),
        ({"fraction": "0.5"}, "fraction"),
        ({"fraction": 0.001}, "fraction"),  # rounds to zero records
        ({"fraction": 0.5, "fraction_seed": -1}, "fraction_seed"),
        ({"fraction": 0.5, "fraction_seed": 1.0}, "fraction_seed"),
    ],
)
def test_bad_fraction_raises_value_error_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _loader(**kwargs)


def test_load_validates_fraction_before_opening_the_dataset(tmp_path):
    with pytest.raises(ValueError, match="fraction"):
        pipeline.load("digits", "train", batch_size=8, data_dir=tmp_path, fraction=2.0)
