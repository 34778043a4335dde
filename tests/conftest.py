"""Fixtures shared across the suite."""
import pytest


@pytest.fixture(scope="session")
def ml100k():
    """The built-in ml-100k, loaded once per session (downloaded once from the package index).

    No skip when it cannot be fetched: the package index is part of the supported environment,
    and a silent skip would hide a broken loader.
    """
    from hybridrec.data.movielens import load_ml100k

    return load_ml100k()
