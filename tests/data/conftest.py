"""Shared fixtures for the data tests: one prepared copy of the offline digits."""

import pytest

from neurojax.data import sources


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A data dir with the offline digits prepared once for the whole session."""
    data_dir = tmp_path_factory.mktemp("tfds")
    sources.get_builder("digits", data_dir)
    return data_dir
