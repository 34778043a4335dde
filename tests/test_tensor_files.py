"""Weights files are hostile until proven otherwise: hand-made safetensors headers, pickles and
zip archives under a .safetensors name, truncated and oversized files are refused with a
DataError naming the file, quickly, without unpickling or allocating what the header claims."""
import json
import pickle
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from hybridrec.data.errors import DataError
from hybridrec.tensor_files import MAX_HEADER, check_layout, read_header, read_tensors


def write_raw(path, header, data=b"", length=None):
    """A safetensors-like file: 8-byte length (the header's, or ``length``), header, data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


class Unpickled:
    """Unpickling this writes a marker file: a pickle that runs code when loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_well_formed_file_reads_back_exactly(tmp_path):
    tensors = {"w": torch.randn(3, 4), "mask": torch.tensor([True, False, True]),
               "half": torch.randn(5).bfloat16(), "empty": torch.zeros(0, 7),
               "scalar": torch.tensor(3, dtype=torch.int64), "ids": torch.arange(10)}
    save_file(tensors, str(tmp_path / "ok.safetensors"), metadata={"format": "x"})
    loaded, metadata = read_tensors(tmp_path / "ok.safetensors")
    assert metadata == {"format": "x"}
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
        assert loaded[name].data_ptr() % 64 == 0  # torch's own aligned allocation
    only, _ = read_tensors(tmp_path / "ok.safetensors", names=("w",))
    assert list(only) == ["w"]


@pytest.mark.parametrize("length", [0x380, 0x480, 0x580])  # bytes 80 03, 80 04, 80 05
def test_a_header_length_that_starts_like_a_pickle_is_still_safetensors(tmp_path, length):
    """Read as bytes, a header length of 896 begins 80 03: a pickle's protocol-3 opening.
    Followed by a JSON header it is a safetensors file (a run's scorers file hit this)."""
    path = tmp_path / "scorers.safetensors"
    tensors = {"w": torch.randn(3, 4)}
    for pad in range(length):  # safetensors pads the header to a multiple of 8
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        if int.from_bytes(path.read_bytes()[:8], "little") == length:
            break
    else:
        pytest.fail(f"no padding gave a header of {length} bytes")
    assert path.read_bytes()[0] == 0x80
    loaded, metadata = read_tensors(path)
    assert torch.equal(loaded["w"], tensors["w"]) and metadata["pad"]
    # A real pickle with the same opening is still refused by name.
    path.write_bytes(pickle.dumps({"w": [1.0]}, protocol=length >> 8))
    with pytest.raises(DataError, match="a pickle"):
        read_tensors(path)


@pytest.mark.parametrize("what, payload, named", [
    ("pickle", lambda p: pickle.dumps({"w": [1.0, 2.0]}), "a pickle"),
    ("torch.save", None, "a zip archive"),
    ("numpy", lambda p: b"\x93NUMPY\x01\x00" + b"\0" * 64, "a NumPy"),
])
def test_pickles_and_archives_are_refused_by_name(tmp_path, what, payload, named):
    path = tmp_path / "model.safetensors"
    if payload is None:
        torch.save({"w": torch.randn(2, 2)}, path)
    else:
        path.write_bytes(payload(path))
    with pytest.raises(DataError, match=named) as err:
        read_tensors(path)
    assert str(path) in str(err.value) and "never loads" in str(err.value)


def test_a_pickle_that_would_run_code_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Unpickled(marker)))
    # The payload is real: unpickling it writes the marker.
    pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match="a pickle"):
        read_tensors(path)
    assert not marker.exists()


GOOD = {"w": entry("F32", [2, 2], 0, 16)}


@pytest.mark.parametrize("name, header, data, length, message", [
    ("empty file", None, b"", None, "only 0 bytes"),
    ("length past the end", GOOD, b"\0" * 16, 10**6, "header length of 1000000"),
    ("length of 2**63", GOOD, b"\0" * 16, 2**63, "header length"),
    ("length over the cap", GOOD, b"\0" * 16, MAX_HEADER + 1, "at most 16 MiB"),
    ("not JSON", b"{not json at all}", b"", None, "JSON object"),
    ("not UTF-8", b"{\xff\xfe}", b"", None, "JSON object"),
    ("a JSON list", b"[1, 2, 3]", b"", None, "JSON object"),
    ("nested a million deep", b"{\"a\":" + b"[" * 10**6 + b"]" * 10**6 + b"}", b"", None,
     "nested too deeply|JSON object"),
    ("duplicate names", b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                        b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
     b"\0" * 4, None, "duplicate key"),
    ("unknown dtype", {"w": entry("C64", [1], 0, 8)}, b"\0" * 8, None, "a dtype among"),
    ("negative dimension", {"w": entry("F32", [-1, 4], 0, 16)}, b"\0" * 16, None, "non-negative"),
    ("float dimension", {"w": entry("F32", [2.0, 2], 0, 16)}, b"\0" * 16, None, "non-negative"),
    ("rank 100", {"w": entry("F32", [1] * 100, 0, 4)}, b"\0" * 4, None, "at most 8"),
    ("shape overflowing 64 bits", {"w": entry("F64", [2**32, 2**32, 2**32], 0, 16)},
     b"\0" * 16, None, "fits the file"),
    ("shape beyond the file", {"w": entry("F32", [10**6], 0, 16)}, b"\0" * 16, None,
     "fits the file"),
    ("offsets beyond the file", {"w": entry("F32", [1], 0, 4000)}, b"\0" * 4, None,
     "within the 4 data bytes"),
    ("offsets reversed", {"w": entry("F32", [1], 4, 0)}, b"\0" * 4, None, "data_offsets"),
    ("offsets not the shape's size", {"w": entry("F32", [2], 0, 4)}, b"\0" * 8, None,
     "spanning the shape's 8 bytes"),
    ("overlapping tensors", {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)},
     b"\0" * 12, None, "overlapping"),
    ("a gap", {"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, b"\0" * 12, None,
     "a gap"),
    ("trailing bytes", GOOD, b"\0" * 20, None, "cover 16 of its 20"),
    ("missing entry keys", {"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, None,
     "exactly dtype, shape and data_offsets"),
    ("metadata not strings", {"__metadata__": {"format": 7}}, b"", None, "__metadata__"),
    ("header not starting with {", b' {"w": 1}', b"", None, "does not start with"),
])
def test_hostile_headers_are_refused_with_the_file_named(tmp_path, name, header, data, length,
                                                          message):
    path = tmp_path / "bad.safetensors"
    if header is None:
        path.write_bytes(data)
    else:
        write_raw(path, header, data, length)
    start = time.perf_counter()
    with pytest.raises(DataError, match=message) as err:
        read_tensors(path)
    assert time.perf_counter() - start < 2.0
    assert str(err.value).startswith(str(path))


def test_booleans_other_than_0_and_1_are_refused(tmp_path):
    path = write_raw(tmp_path / "mask.safetensors", {"m": entry("BOOL", [3], 0, 3)},
                     b"\x00\x01\x07")
    with pytest.raises(DataError, match="tensor 'm': booleans stored as bytes 0 and 1"):
        read_tensors(path)


def test_a_huge_file_is_judged_by_its_header_without_reading_the_data(tmp_path):
    """A 64 GiB (sparse) file whose one tensor is not what the caller expects: refused at
    once, before anything is allocated."""
    size = 64 * 2**30
    path = write_raw(tmp_path / "huge.safetensors", {"evil": entry("U8", [size], 0, size)})
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + size)
    start = time.perf_counter()
    header = read_header(path)
    assert header.tensors["evil"].nbytes == size
    with pytest.raises(DataError, match="tensor .w.: the tensor .w.; missing"):
        read_tensors(path, lambda h: check_layout(h, {"w": ("F32", (2, 2))}))
    assert time.perf_counter() - start < 2.0


def test_check_layout_names_the_tensor_and_binds_sizes(tmp_path):
    save_file({"user": torch.zeros(3, 4), "item": torch.zeros(5, 6)},
              str(tmp_path / "t.safetensors"))
    header = read_header(tmp_path / "t.safetensors")
    with pytest.raises(DataError, match=r"tensor 'item': shape \[5, 4\] \(D = 4\), got \[5, 6\]"):
        check_layout(header, {"user": ("F32", ("U", "D")), "item": ("F32", ("I", "D"))})
    with pytest.raises(DataError, match="tensor 'user': dtype I64, got F32"):
        check_layout(header, {"user": ("I64", (3, 4)), "item": ("F32", (5, 6))})
    with pytest.raises(DataError, match="found the tensor .item. besides"):
        check_layout(header, {"user": ("F32", (3, 4))})
    with pytest.raises(DataError, match=r"shape \[7, \*\] \(U = 7\), got \[3, 4\]"):
        check_layout(header, {"user": ("F32", ("U", None)), "item": ("F32", (None, 6))},
                     sizes={"U": 7})
    assert check_layout(header, {"user": ("F32", ("U", None)), "item": ("F32", ("I", None))}) \
        == {"U": 3, "I": 5}


def test_a_folder_or_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="it is a folder"):
        read_tensors(tmp_path)
    with pytest.raises(DataError, match="it does not exist"):
        read_tensors(tmp_path / "nothing.safetensors")
