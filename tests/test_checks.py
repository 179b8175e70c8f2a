"""neurojax._checks: the argument checks every folder of the package uses."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax._checks import check_bool, check_choice, check_int, check_real, is_concrete


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
