"""A split on the device: the order of each step's batch, and the records it holds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax import data as nj_data
from neurojax.data import on_device


def _brute_force_indices(key, steps, n, batch_size):
    """One permutation per epoch, drawn step by step."""
    per_epoch = n // batch_size
    rows = []
    for t in steps:
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n))
        start = (t % per_epoch) * batch_size
        rows.append(perm[start:start + batch_size])
    return np.stack(rows)


@pytest.mark.parametrize("first,count", [(0, 1), (0, 7), (5, 9), (13, 30)])
def test_batch_indices_equal_a_per_step_loop(first, count):
    key = jax.random.PRNGKey(4)
    steps = jnp.arange(first, first + count)
    got = np.asarray(on_device.batch_indices(key, steps, 23, 5))  # 4 steps per epoch
    np.testing.assert_array_equal(got, _brute_force_indices(key, range(first, first + count), 23, 5))


def test_each_epoch_sees_distinct_examples_in_a_new_order():
    key = jax.random.PRNGKey(0)
    idx = np.asarray(on_device.batch_indices(key, jnp.arange(8), 22, 5))  # 4 steps per epoch
    epoch0, epoch1 = idx[:4].ravel(), idx[4:].ravel()
    assert len(set(epoch0)) == len(set(epoch1)) == 20
    assert not np.array_equal(epoch0, epoch1)
    other = np.asarray(on_device.batch_indices(jax.random.PRNGKey(1), jnp.arange(8), 22, 5))
    assert not np.array_equal(idx, other)  # the key sets the order


def test_epochs_spanned_is_tight():
    for per_epoch in (1, 3, 7):
        for k in range(1, 20):
            worst = max(len({t // per_epoch for t in range(s, s + k)}) for s in range(3 * per_epoch))
            assert on_device.epochs_spanned(k, per_epoch) >= worst
            assert on_device.epochs_spanned(k, per_epoch) <= worst + 1


def test_batch_size_larger_than_the_split_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        on_device.batch_indices(jax.random.PRNGKey(0), jnp.arange(2), 4, 5)


def test_split_arrays_hold_the_records_the_grain_path_trains_on(tmp_path):
    data_dir = str(tmp_path)
    arrays = on_device.load_split_arrays("digits", "train", data_dir=data_dir, fraction=0.25)
    loader = nj_data.load("digits", "train", batch_size=10, data_dir=data_dir, seed=3,
                          fraction=0.25, num_epochs=1, drop_remainder=False)
    batches = list(loader)
    grain_images = np.concatenate([b["image"] for b in batches])
    assert arrays["image"].dtype == np.float32 and arrays["label"].dtype == np.int32
    assert len(arrays["image"]) == len(grain_images) == round(0.25 * 1437)
    # the same multiset of records (grain shuffles them)
    key = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))
    assert key(arrays["image"]) == key(grain_images)
    est = on_device.estimated_bytes("digits", "train", data_dir=data_dir, fraction=0.25)
    held = sum(v.nbytes for v in arrays.values())
    assert held == est


def test_use_device_data_modes():
    assert on_device.use_device_data("auto", 10, 10)
    assert not on_device.use_device_data("auto", 11, 10)
    assert on_device.use_device_data("on", 11, 10)
    assert not on_device.use_device_data("off", 1, 10)
    with pytest.raises(ValueError, match="config.dataset.on_device"):
        on_device.use_device_data("yes", 1, 10)
