"""MovieLens-100K with its Freebase knowledge graph, built in.

The files come from the ``recbole==1.2.1`` wheel on the package index (RecBole ships
``recbole/dataset_example/ml-100k/``): pip downloads the wheel once (no install, no
dependencies), the five atomic files are extracted, their sha256 checked, and they are kept under
``<cache root>/ml-100k/`` (see :func:`hybridrec.cache.cache_root`). Later loads read the cache.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hybridrec.cache import cache_root
from hybridrec.data.atomic import load_atomic
from hybridrec.data.dataset import Dataset

log = logging.getLogger(__name__)

WHEEL = "recbole==1.2.1"
_MEMBER = "recbole/dataset_example/ml-100k/ml-100k{}"
SHA256 = {
    ".inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    ".item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    ".user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    ".kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
    ".link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached(folder: Path) -> bool:
    return all((folder / f"ml-100k{s}").is_file() for s in SHA256)


def fetch_ml100k(cache_dir: str | Path | None = None) -> Path:
    """The folder holding the verified ml-100k atomic files, downloading them once.

    Raises:
        RuntimeError: pip could not download the wheel, or a file's checksum differs.
    """
    folder = Path(cache_dir) if cache_dir else cache_root() / "ml-100k"
    if _cached(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        log.info("Downloading %s from the package index (once) into %s", WHEEL, folder)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", WHEEL, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-1.2.1-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {WHEEL} with pip (needed once for ml-100k):\n"
                               f"{done.stderr.strip()[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for suffix, digest in SHA256.items():
                data = wheel.read(_MEMBER.format(suffix))
                if _sha256(data) != digest:
                    raise RuntimeError(f"{wheels[0].name}: ml-100k{suffix} has sha256 "
                                       f"{_sha256(data)}, expected {digest}")
                part = Path(tmp) / f"ml-100k{suffix}"
                part.write_bytes(data)
                # Atomic: a killed run leaves either no file or a verified one.
                os.replace(part, folder / part.name)
    return folder


def load_ml100k(cache_dir: str | Path | None = None) -> Dataset:
    """MovieLens-100K: 943 users, 1,682 items, 100,000 ratings with timestamps, and the Freebase KG.

    Items: ``title`` and ``year`` (text), ``genre`` (categorical, multi-valued). Users: ``age``
    (text), ``gender`` and ``occupation`` (categorical), ``zip_code`` (kept, unused). KG: the
    shipped Freebase triples (24 relations over mids with no labels), linked through ``.link``.
    """
    return load_atomic(
        fetch_ml100k(cache_dir),
        "ml-100k",
        rename={"movie_title": "title", "release_year": "year", "class": "genre"},
        item_text_columns=("title", "year"),
        item_categorical_columns=("genre",),
        user_text_columns=("age",),
        user_categorical_columns=("gender", "occupation"),
    )
