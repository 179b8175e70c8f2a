"""neurojax._checks: the argument checks every folder of the package uses."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax._checks import (check_bool, check_choice, check_distribution, check_int,
                              check_matrix, check_real, is_concrete)


def test_is_concrete_false_only_under_a_trace():
    seen = []
    jax.jit(lambda x: seen.append(is_concrete(x)) or x)(1.0)
    jax.vmap(lambda x: seen.append(is_concrete(x)) or x)(jnp.ones(2))
    assert seen == [False, False]
    assert all(is_concrete(v) for v in (1.0, np.ones(2), jnp.ones(2), "a", None))


@pytest.mark.parametrize("value, minimum", [(1, 1), (np.int32(3), 1), (0, 0), (2, 2)])
def test_check_int_accepts_and_returns_an_int(value, minimum):
    out = check_int("n", value, minimum)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -1, True, np.bool_(True), 1.0, "1", None, np.ones(1)])
def test_check_int_refuses(value):
    with pytest.raises(ValueError, match=r"num_steps must be an int >= 1, got"):
        check_int("num_steps", value)


def test_check_choice():
    assert check_choice("mode", "a", ("a", "b")) == "a"
    assert check_choice("method", "ans", {"huffman": 1, "ans": 2}) == "ans"
    with pytest.raises(ValueError, match=r"mode must be one of \('a', 'b'\), got 'c'"):
        check_choice("mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match="mode"):
        check_choice("mode", ["a"], frozenset({"a"}))   # unhashable


def test_check_bool():
    assert check_bool("flag", True) is True
    for bad in (1, 0, np.bool_(True), "yes", None):
        with pytest.raises(ValueError, match="flag must be a bool"):
            check_bool("flag", bad)


@pytest.mark.parametrize("value", [0, 0.5, 1, np.float32(0.25), np.array([0.0, 1.0]),
                                   jnp.asarray(0.5, jnp.bfloat16), jnp.arange(3)])
def test_check_real_accepts_numbers_in_range(value):
    assert check_real("p", value, low=0, high=2) is value


@pytest.mark.parametrize("value, kwargs, text", [
    (-1e-9, {"low": 0}, "lr must be a finite number >= 0"),
    (0.0, {"low": 0, "low_open": True}, "lr must be a finite number > 0"),
    (1.0, {"low": 0, "high": 1, "high_open": True}, r"in \[0, 1\)"),
    (0.0, {"low": 0, "high": 1, "low_open": True, "high_open": True}, r"in \(0, 1\)"),
    (2.0, {"high": 1}, "<= 1"),
    (math.nan, {}, "finite number, got nan"),
    (math.inf, {"low": 0}, "finite"),
    (np.array([0.5, -0.5]), {"low": 0}, ">= 0"),
    (True, {}, "finite number"),
    ("0.1", {}, "finite number"),
    (None, {}, "finite number"),
    (1j, {}, "finite number"),
    (np.array([True]), {}, "finite number"),
])
def test_check_real_refuses_naming_the_argument_and_range(value, kwargs, text):
    with pytest.raises(ValueError, match=text) as err:
        check_real("lr", value, **kwargs)
    assert str(err.value).startswith("lr must be a finite number")


def test_check_real_lets_traced_values_through():
    out = jax.jit(lambda x: check_real("sigma", x, low=0) * 2)(-1.0)
    assert float(out) == -2.0
    with pytest.raises(ValueError, match="sigma"):
        jax.jit(lambda x: x * check_real("sigma", -1.0, low=0))(1.0)


def test_check_matrix():
    out = check_matrix("z", np.ones((2, 3)))
    assert isinstance(out, jax.Array) and out.shape == (2, 3)
    assert check_matrix("w_bar", jnp.eye(3), square=True).shape == (3, 3)
    with pytest.raises(ValueError, match=r"z must be a 2-D matrix, got shape \(3,\)"):
        check_matrix("z", np.ones(3))
    with pytest.raises(ValueError, match=r"w_bar must be square, got shape \(2, 3\)"):
        check_matrix("w_bar", np.ones((2, 3)), square=True)
    # shapes are static: checked under jit too
    with pytest.raises(ValueError, match="t_m must be a 2-D matrix"):
        jax.jit(lambda x: check_matrix("t_m", x))(jnp.ones(3))


def test_check_distribution():
    p = np.array([0.25, 0.75])
    assert check_distribution("p_natural", p) is p
    rows = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    assert check_distribution("aug", rows, axis=1) is rows
    check_distribution("p", [1 - 1e-7, 1e-7])   # within the default atol
    for bad, text in (([0.5, 0.6], r"p_natural must sum to 1 along axis -1, got sums in "
                                   r"\[1\.1, 1\.1\]"),
                      ([1.5, -0.5], "p_natural must be finite and non-negative"),
                      ([np.nan, 1.0], "p_natural must be finite and non-negative")):
        with pytest.raises(ValueError, match=text):
            check_distribution("p_natural", bad)
    with pytest.raises(ValueError, match=r"aug must sum to 1 along axis 1, got sums in "
                                         r"\[0\.5, 1\]"):
        check_distribution("aug", [[0.5, 0.5], [0.25, 0.25]], axis=1)
    with pytest.raises(ValueError, match="q must sum to 1"):
        check_distribution("q", [0.5, 0.5 + 1e-3], atol=1e-4)


def test_check_distribution_lets_traced_values_through():
    out = jax.jit(lambda p: check_distribution("p", p) * 2)(jnp.array([0.5, 0.6]))
    np.testing.assert_allclose(out, [1.0, 1.2])
