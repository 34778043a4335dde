"""The suite-wide guard (tests/conftest.py): a test that reaches the network or writes outside
its temporary folders fails; loopback servers, Unix sockets and tmp_path are fine."""
import os
import socket
import threading


def test_writes_outside_the_temporary_folders_are_refused(guard_allows, tmp_path):
    here = os.path.join(os.path.dirname(__file__), "guard-should-never-exist.txt")
    assert not guard_allows(lambda: open(here, "w").close())
    assert not guard_allows(lambda: os.open(here, os.O_CREAT | os.O_WRONLY))
    assert not os.path.exists(here)
    assert not guard_allows(lambda: os.mkdir(here + ".d"))
    (tmp_path / "a").write_text("fine")
    assert not guard_allows(lambda: os.replace(tmp_path / "a", here))
    assert not os.path.exists(here)
    # Reading anywhere, and writing in tmp_path, pass.
    assert guard_allows(lambda: open(__file__).read())
    assert guard_allows(lambda: (tmp_path / "b").write_text("fine"))
    assert guard_allows(lambda: os.replace(tmp_path / "a", tmp_path / "c"))


def test_network_connections_are_refused_but_loopback_is_not(guard_allows):
    def connect(address):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect_ex(address)

    # An address that is not this machine: refused before a packet leaves.
    assert not guard_allows(lambda: connect(("192.0.2.1", 80)))
    assert not guard_allows(lambda: socket.getaddrinfo("example.com", 443))
    # A loopback server (as HTTP tests run one) and its client pass.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accepted = threading.Thread(target=lambda: server.accept()[0].close())
        accepted.start()
        assert guard_allows(lambda: socket.create_connection(("127.0.0.1", port), 2).close())
        accepted.join(2)
    assert guard_allows(lambda: socket.getaddrinfo("localhost", 80))
    if hasattr(socket, "AF_UNIX"):
        left, right = socket.socketpair(socket.AF_UNIX)
        left.close()
        right.close()


def test_a_violation_swallowed_by_the_code_still_fails_the_test(pytester):
    """The guard records what it refused, so code that catches every exception (as the text
    cache does) cannot hide it: the test fails at teardown."""
    pytester.makeconftest(open(os.path.join(os.path.dirname(__file__), "conftest.py")).read())
    pytester.makepyfile(test_swallow="""
        def test_swallows():
            try:
                open("/proc/guard-swallowed.txt", "w")
            except Exception:
                pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test broke the suite's guard*",
                                 "*wrote '/proc/guard-swallowed.txt' outside the temporary*"])
