"""The grain input path: batching, determinism, epochs, sharding, transforms."""

import itertools

import chex
import grain
import numpy as np
import pytest

from neurojax.data import pipeline, sources

N_IDS = 101  # odd, so shards and batches have remainders


def _ids_source(n=N_IDS):
    """In-memory source whose examples carry their own index."""
    return pipeline.ArraySource({"id": np.arange(n), "label": np.arange(n) % 10})


def _ids(loader):
    return np.concatenate([b["id"] for b in loader]).tolist()


class _KeepEven(grain.transforms.Filter):
    def filter(self, example):
        return example["id"] % 2 == 0


def _eval_loader(source, **kwargs):
    kwargs = {"shuffle": False, "drop_remainder": False, **kwargs}
    return pipeline.make_loader(source, **kwargs)


# ---------------------------------------------------------------- digits


def test_train_batches_shapes_dtypes_and_drop_remainder(digits_dir):
    loader = pipeline.load("digits", "train", batch_size=64, data_dir=digits_dir, seed=3)
    batches = list(loader)
    assert len(batches) == 1437 // 64
    for batch in batches:
        assert set(batch) == {"image", "label"}
        chex.assert_shape(batch["image"], (64, 8, 8, 1))
        chex.assert_shape(batch["label"], (64,))
        assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
        assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        assert 0 <= batch["label"].min() and batch["label"].max() <= 9


def test_eval_pass_covers_split_once_with_float_images(digits_dir):
    loader = pipeline.load(
        "digits", "test", batch_size=64, data_dir=digits_dir, shuffle=False, drop_remainder=False
    )
    batches = list(loader)
    assert [len(b["label"]) for b in batches] == [64] * 5 + [360 - 5 * 64]
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    # Unshuffled, so example i is the source's record i.
    source = sources.data_source("digits", "test", digits_dir)
    raw = np.stack([source[i]["image"] for i in range(len(source))])
    np.testing.assert_allclose(images, raw.astype(np.float64) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, [source[i]["label"] for i in range(len(source))])


def test_same_seed_same_order_different_seed_different(digits_dir):
    def labels(seed):
        loader = pipeline.load("digits", "train", batch_size=100, data_dir=digits_dir, seed=seed)
        return np.concatenate([b["label"] for b in loader])

    a, b, c = labels(7), labels(7), labels(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_slices_and_unknown_split(digits_dir):
    loader = pipeline.load(
        "digits", "train[:100]+test[:28]", batch_size=64, data_dir=digits_dir, shuffle=False
    )
    assert sum(len(b["label"]) for b in loader) == 128
    with pytest.raises(ValueError, match="split"):
        pipeline.load("digits", "validation", batch_size=8, data_dir=digits_dir)


def test_preprocess_none_keeps_stored_dtypes(digits_dir):
    loader = pipeline.load(
        "digits", "test", batch_size=8, data_dir=digits_dir, preprocess=None, num_epochs=1
    )
    batch = next(iter(loader))
    assert batch["image"].dtype == np.uint8


# ---------------------------------------------------------------- ids source


def test_shuffle_is_a_permutation_and_unshuffled_is_identity():
    assert _ids(_eval_loader(_ids_source(), batch_size=10)) == list(range(N_IDS))
    shuffled = _ids(pipeline.make_loader(_ids_source(), batch_size=10, drop_remainder=False))
    assert sorted(shuffled) == list(range(N_IDS)) and shuffled != list(range(N_IDS))


def test_num_epochs_repeats_each_example_and_reshuffles():
    loader = pipeline.make_loader(_ids_source(), batch_size=7, num_epochs=3, drop_remainder=False)
    ids = _ids(loader)
    assert len(ids) == 3 * N_IDS
    epochs = [ids[i * N_IDS : (i + 1) * N_IDS] for i in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(N_IDS))
    assert epochs[0] != epochs[1]


def test_num_epochs_none_repeats_forever():
    loader = pipeline.make_loader(_ids_source(), batch_size=32, num_epochs=None)
    batches = list(itertools.islice(loader, 20))  # 640 examples > 6 epochs
    assert len(batches) == 20
    assert all(len(b["id"]) == 32 for b in batches)


def test_drop_remainder_with_epochs_is_one_stream():
    loader = pipeline.make_loader(_ids_source(), batch_size=10, num_epochs=2)
    assert len(list(loader)) == (2 * N_IDS) // 10


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_two_process_shards_are_disjoint_and_cover(drop_remainder):
    shards = []
    for index in range(2):
        options = grain.sharding.ShardOptions(
            shard_index=index, shard_count=2, drop_remainder=drop_remainder
        )
        loader = pipeline.make_loader(
            _ids_source(), batch_size=5, seed=1, drop_remainder=False, shard_options=options
        )
        shards.append(_ids(loader))
    a, b = set(shards[0]), set(shards[1])
    assert len(a) == len(shards[0]) and len(b) == len(shards[1])  # no repeats
    assert not a & b
    if drop_remainder:
        assert len(a) == len(b) == N_IDS // 2
    else:
        assert a | b == set(range(N_IDS))


def test_default_sharding_is_by_jax_process():
    # One process here: the default shard is the whole dataset.
    loader = pipeline.make_loader(_ids_source(), batch_size=10, drop_remainder=False)
    assert sorted(_ids(loader)) == list(range(N_IDS))


def test_user_transforms_run_in_order_after_preprocess():
    def add_double(example):
        return {**example, "double": 2 * example["id"]}

    class AddNoise(grain.transforms.RandomMap):
        def random_map(self, example, rng):
            return {**example, "noise": rng.normal()}

    def run(seed):
        loader = pipeline.make_loader(
            _ids_source(), batch_size=10, seed=seed, transforms=[add_double, AddNoise()]
        )
        return list(loader)

    first, again, other = run(0), run(0), run(1)
    for batch in first:
        np.testing.assert_array_equal(batch["double"], 2 * batch["id"])
        assert batch["label"].dtype == np.int32  # preprocess ran first
    # Random transforms are deterministic given the seed.
    np.testing.assert_array_equal(first[0]["noise"], again[0]["noise"])
    assert not np.array_equal(first[0]["noise"], other[0]["noise"])


def test_array_source_checks_lengths():
    with pytest.raises(ValueError, match="arrays"):
        pipeline.ArraySource({"x": np.zeros(3), "y": np.zeros(4)})


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 200}, "batch_size"),  # more than one epoch holds
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"num_epochs": 0}, "num_epochs"),
        ({"shuffle": 1}, "shuffle"),
        ({"drop_remainder": None}, "drop_remainder"),
        ({"worker_count": -1}, "worker_count"),
        ({"transforms": [42]}, "transforms"),
        ({"transforms": [grain.transforms.Batch(4)]}, "transforms"),
        ({"transforms": [_KeepEven()]}, "transforms"),
        ({"shard_options": (0, 2)}, "shard_options"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs, arg):
    kwargs = {"batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=arg):
        pipeline.make_loader(_ids_source(), **kwargs)


def test_load_validates_before_touching_data(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.load("digits", "train", batch_size=0, data_dir=tmp_path)
    with pytest.raises(ValueError, match="cifar10.*digits|digits.*cifar10"):
        pipeline.load("svhn", "train", batch_size=8, data_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing prepared, nothing downloaded


@pytest.mark.parametrize("num_records", [1, 7, 100, 101])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
@pytest.mark.parametrize("drop", [False, True])
def test_shard_bounds_partition_records(num_records, count, drop):
    bounds = [
        pipeline.shard_bounds(num_records, grain.sharding.ShardOptions(i, count, drop))
        for i in range(count)
    ]
    sizes = [stop - start for start, stop in bounds]
    covered = [i for start, stop in bounds for i in range(start, stop)]
    assert covered == sorted(set(covered))  # contiguous, disjoint, in order
    if drop:
        assert sizes == [num_records // count] * count
    else:
        assert covered == list(range(num_records))
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(digits_dir):
    def labels(worker_count):
        loader = pipeline.load(
            "digits", "test", batch_size=40, data_dir=digits_dir, seed=5,
            worker_count=worker_count,
        )
        return np.concatenate([b["label"] for b in loader])

    np.testing.assert_array_equal(labels(2), labels(0))


def test_iterator_state_resumes_the_same_stream():
    loader = pipeline.make_loader(_ids_source(), batch_size=8, num_epochs=None, seed=2)
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it)["id"] for _ in range(15)]  # crosses an epoch boundary
    resumed = iter(loader)
    resumed.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(resumed)["id"], want)
