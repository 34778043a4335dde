"""Fixtures shared across the suite, and the guard every test runs under: no network, no
writes outside temporary folders."""
import ipaddress
import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

pytest_plugins = ("pytester",)  # the guard's own test runs a small suite under it

# Hypothesis keeps its example database and constants cache in ``./.hypothesis`` by default,
# which is the checkout: give it a folder of its own in the system's temporary folder.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hybridrec-hypothesis-"))

# ---------------------------------------------------------------------------------------------
# The guard. An audit hook (they cannot be removed, so it is installed once and switched on
# around each test by the autouse fixture below) refuses, and records:
#
# * a socket connection, datagram or name lookup that is not loopback (127.0.0.0/8, ::1,
#   localhost) or a Unix socket: tests of a local HTTP server are fine, the internet is not;
# * opening a file for writing, creating, renaming onto, removing or making a folder outside
#   the temporary folders (the system's, which holds pytest's tmp_path) and the two documented
#   cache folders that session fixtures fill: ``<cache root>/ml-100k`` (the data set, fetched
#   once) and ``<cache root>/text`` (the text-embedding cache), ``<cache root>`` being
#   $HYBRIDREC_CACHE_DIR or the user cache dir as the session starts; Python's own
#   ``__pycache__`` files are allowed too.
#
# Limits: subprocesses (``pip download`` for ml-100k, the CLIs run as ``python -m``) and
# writes from native code (safetensors, torch.save) are not seen by the hook; a run folder
# written by safetensors is still caught when it is renamed into place.

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}
_FILE_EVENTS = {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate",
                "shutil.rmtree"}
_NET_EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"}


_REPOSITORY = os.path.realpath(Path(__file__).resolve().parent.parent)


class _Guard:
    active = False
    allowed: tuple[str, ...] = ()
    violations: list[str] = []


class GuardViolation(OSError):
    """A test tried to reach the network or write outside its temporary folders."""


def _loopback(host) -> bool:
    if host is None:  # getaddrinfo(None, port): the local host
        return True
    host = host.decode(errors="replace") if isinstance(host, bytes) else str(host)
    host = host.strip("[]").split("%")[0]
    if host in _LOOPBACK_NAMES or host == "":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _allowed_path(path) -> bool:
    if isinstance(path, int):  # an open file descriptor
        return True
    path = os.fsdecode(path)
    real = os.path.realpath(os.path.abspath(path))
    if "__pycache__" in Path(real).parts or real == os.devnull:
        return True
    if real == _REPOSITORY or real.startswith(_REPOSITORY + os.sep):
        return False  # the checkout, even when it lies in a temporary folder itself
    return any(real == root or real.startswith(root + os.sep) for root in _Guard.allowed)


def _violation(what: str) -> None:
    _Guard.violations.append(what)
    raise GuardViolation(f"test guard: {what}")


def _audit(event: str, args: tuple) -> None:
    if not _Guard.active:
        return
    if event in _FILE_EVENTS:
        if event == "open":
            path, _mode, flags = args
            if flags is None or not flags & _WRITE_FLAGS or _allowed_path(path):
                return
            _violation(f"wrote {os.fsdecode(path)!r} outside the temporary folders")
        # The path, and the folder descriptor it is relative to (-1 / None: the working
        # directory), as each event gives them.
        if event == "os.rename":  # (src, dst, src_dir_fd, dst_dir_fd)
            path, dir_fd = args[1], args[3]
        elif event == "os.mkdir":  # (path, mode, dir_fd)
            path, dir_fd = args[0], args[2]
        elif event == "os.truncate":  # (path or fd, length)
            path, dir_fd = args[0], None
        else:  # os.remove, os.rmdir, shutil.rmtree: (path, dir_fd)
            path, dir_fd = args[0], args[1]
        if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(os.fsdecode(path)):
            try:  # shutil.rmtree removes by descriptor: resolve it (Linux)
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fsdecode(path))
            except OSError:
                return
        if not _allowed_path(path):
            _violation(f"{event} on {os.fsdecode(path)!r} outside the temporary folders")
    elif event in _NET_EVENTS:
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[-1]
            if sock.family == getattr(socket, "AF_UNIX", None):
                return
            host = address[0] if isinstance(address, tuple) else address
        else:
            host = args[0]
        if not _loopback(host):
            _violation(f"{event} to {host!r}: tests open no network connection")


def _cache_folders() -> tuple[str, ...]:
    from hybridrec.cache import cache_root

    root = cache_root()
    return tuple(os.path.realpath(root / name) for name in ("ml-100k", "text"))


sys.addaudithook(_audit)


@pytest.fixture(scope="session", autouse=True)
def _tools_keep_to_temporary_folders(tmp_path_factory):
    """Matplotlib (the benchmarks' plots) writes its config and font cache under the home
    folder unless told otherwise."""
    if "MPLCONFIGDIR" not in os.environ:
        os.environ["MPLCONFIGDIR"] = str(tmp_path_factory.mktemp("matplotlib"))
        yield
        del os.environ["MPLCONFIGDIR"]
    else:
        yield


@pytest.fixture(autouse=True)
def _no_network_no_stray_writes(tmp_path_factory, _tools_keep_to_temporary_folders):
    """Every test: fail it if it opened a connection off this machine or wrote outside the
    temporary folders (see the guard above)."""
    if not _Guard.allowed:
        _Guard.allowed = (os.path.realpath(tempfile.gettempdir()),
                          os.path.realpath(tmp_path_factory.getbasetemp()),
                          *_cache_folders())
    _Guard.violations = []
    _Guard.active = True
    try:
        yield
    finally:
        _Guard.active = False
    if _Guard.violations:
        pytest.fail("the test broke the suite's guard:\n  " + "\n  ".join(_Guard.violations),
                    pytrace=False)


@pytest.fixture
def guard_allows(tmp_path):
    """Whether the guard would let the current test do something (for the guard's own
    tests): ``guard_allows(callable)`` runs it and says whether it went through."""
    def run(action) -> bool:
        try:
            action()
        except GuardViolation:
            _Guard.violations.clear()
            return False
        return True

    return run


@pytest.fixture(scope="session")
def ml100k():
    """The built-in ml-100k, loaded once per session (downloaded once from the package index).

    No skip when it cannot be fetched: the package index is part of the supported environment,
    and a silent skip would hide a broken loader.
    """
    from hybridrec.data.movielens import load_ml100k

    return load_ml100k()


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """A run folder trained on kg/examples in seconds (text, KG, GNN, ALS, LightGCN), once per
    session; tests read it or copy it, never change it."""
    import torch

    from hybridrec.testing import EXAMPLE_DATA, EXAMPLE_SMALL
    from hybridrec.train import main as train_main

    out = tmp_path_factory.mktemp("example") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(EXAMPLE_DATA + EXAMPLE_SMALL + ["--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


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
