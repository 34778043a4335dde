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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for tiny graphs: OpenMP stalls on a shared 2-core CPU cost 10-30x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def example_dataset():
    """kg/examples as one Dataset: CSV tables, the Turtle graph linked by the IRI column."""
    from hybridrec.data import load_csv

    folder = "kg/examples"
    return load_csv(f"{folder}/interactions.csv", items=f"{folder}/items.csv",
                    users=f"{folder}/users.csv", kg=f"{folder}/graph.ttl",
                    item_iri_column="iri", item_text_columns=("title", "year"),
                    item_categorical_columns=("genre",), user_text_columns=("age",),
                    user_categorical_columns=("gender", "occupation"))
