"""Reading safetensors files (runs, checkpoints, node features, saved baselines, the text
cache) as hostile input: every file is validated before any tensor is materialised.

The safetensors layout is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
(``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
"__metadata__": {...}}``), then the data. :func:`read_header` checks, from the first
``8 + n`` bytes alone and in bounded time and memory whatever the file's size:

* that the file is not a pickle, a zip archive (``torch.save``), a NumPy, gzip or HDF5 file
  (refused by name: hybridrec never unpickles);
* the header length against the file size and a cap of :data:`MAX_HEADER` bytes;
* that the header is one JSON object (no duplicate keys) of tensor entries and string
  metadata;
* each entry's dtype (one of :data:`DTYPES`), shape (non-negative integers, at most
  :data:`MAX_RANK` of them, whose product is bounded by the data size before it can grow)
  and data offsets, which must equal the shape's byte size;
* that the entries tile the data exactly: contiguous, from byte 0 to the end of the file.

Callers then check names and shapes against what they expect (:func:`check_layout`) before
:func:`read_tensors` allocates anything, so a file cannot make hybridrec allocate more than
its own size. Every problem is a :class:`~hybridrec.data.errors.DataError` naming the file
and the tensor.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hybridrec.data.errors import DataError

# safetensors dtype -> (torch dtype, bytes per element). Only what hybridrec writes.
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "BOOL": (torch.bool, 1), "U8": (torch.uint8, 1), "I8": (torch.int8, 1),
    "I16": (torch.int16, 2), "I32": (torch.int32, 4), "I64": (torch.int64, 8),
    "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, (dtype, _) in DTYPES.items()}
# Headers of hybridrec's files are a few kB (a checkpoint's history included); 16 MiB bounds
# the JSON parse in time and memory.
MAX_HEADER = 16 * 2**20
MAX_RANK = 8

# Leading bytes of formats that are not safetensors, and what they are called.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (torch.save writes these; they hold a pickle)"),
    (b"PK\x05\x06", "a zip archive"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
)
_PICKLE = "a pickle (torch.save's legacy format, pickle.dump, joblib)"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a validated header; ``start``/``stop``: byte offsets in the
    data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def nbytes(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Header:
    """A validated safetensors header: the tensors by name (in data order), the metadata and
    where the data section begins."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int

    def error(self, expected: str, name: str | None = None) -> DataError:
        """A :class:`DataError` about this file (and tensor ``name``)."""
        return DataError(self.path, expected, field=name, field_kind="tensor")


def _sniff(head: bytes) -> str | None:
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    # Pickle protocols 2-5 begin with PROTO <version>.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _PICKLE
    return None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_header(path: str | os.PathLike[str]) -> Header:
    """Validate the safetensors file ``path`` from its header (see the module docstring).

    Raises:
        DataError: anything that is not a well-formed safetensors file of :data:`DTYPES`.
    """
    path = Path(path)
    what = "a safetensors file"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            ahead = f.read(8)
            # A header length whose bytes happen to start like a pickle (0x380 = 896 is 80 03)
            # is still safetensors when its JSON header follows: sniff only the others.
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            plausible = 2 <= n <= MAX_HEADER and 8 + n <= size and ahead[:1] == b"{"
            kind = None if plausible else _sniff(head + ahead)
            if kind is not None:
                raise DataError(path, f"{what}; this is {kind}, which hybridrec never loads "
                                      f"(unpickling can run code). Save tensors with "
                                      f"safetensors instead")
            if len(head) < 8:
                raise DataError(path, f"{what} (an 8-byte header length, a JSON header, the "
                                      f"data); the file has only {size} bytes")
            n = int.from_bytes(head, "little")
            if n < 2 or n > MAX_HEADER or 8 + n > size:
                limit = "at most 16 MiB" if n > MAX_HEADER else \
                    f"2 to {size - 8} bytes for a file of {size} bytes"
                raise DataError(path, f"{what}; its first 8 bytes give a header length of {n} "
                                      f"bytes, expected {limit} (truncated, or not "
                                      f"safetensors?)", field="header length",
                                field_kind="field")
            f.seek(8)
            raw = f.read(n)
    except DataError:
        raise
    except IsADirectoryError:
        raise DataError(path, f"{what}; it is a folder") from None
    except FileNotFoundError:
        raise DataError(path, f"{what}; it does not exist") from None
    except OSError as err:
        raise DataError(path, f"a readable {what} ({err.strerror or err})") from None
    if len(raw) != n:  # The file shrank while we read it.
        raise DataError(path, f"{what} of {size} bytes; it changed while being read")
    data_size = size - 8 - n

    # 1. One JSON object.
    try:
        if not raw.startswith(b"{"):
            raise ValueError("it does not start with '{'")
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as err:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; a deeply nested header
        # exhausts the parser's recursion.
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)[:200]
        raise DataError(path, f"{what} whose header is a JSON object ({reason})",
                        field="header", field_kind="field") from None
    if not isinstance(header, dict):
        raise DataError(path, f"{what} whose header is a JSON object, got "
                              f"{type(header).__name__}", field="header", field_kind="field")

    # 2. Metadata: strings to strings.
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise DataError(path, f"{what} whose __metadata__ maps strings to strings",
                        field="__metadata__", field_kind="field")

    # 3. Entries: dtype, shape and offsets that agree, bounded by the data size.
    entries: list[tuple[int, int, str, TensorInfo]] = []
    for name, entry in header.items():
        def bad(expected: str) -> DataError:
            return DataError(path, expected, field=name, field_kind="tensor")

        if not name:
            raise bad("a non-empty tensor name")
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad("an entry with exactly dtype, shape and data_offsets, got "
                      f"{sorted(entry) if isinstance(entry, dict) else type(entry).__name__}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise bad(f"a dtype among {', '.join(DTYPES)}, got {str(dtype)[:40]!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(_is_int(d) and d >= 0 for d in shape)):
            raise bad(f"a shape of at most {MAX_RANK} non-negative integers, got "
                      f"{str(shape)[:80]}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise bad(f"data_offsets [begin, end] within the {data_size} data bytes, got "
                      f"{str(offsets)[:80]}")
        itemsize = DTYPES[dtype][1]
        numel, limit = 1, data_size // itemsize
        for d in shape:  # The product, stopped as soon as it outgrows the file.
            numel *= d
            if numel > limit:
                raise bad(f"a shape whose {dtype} data fits the file; {shape} needs more than "
                          f"the {data_size} data bytes there are")
        if numel * itemsize != offsets[1] - offsets[0]:
            raise bad(f"data_offsets spanning the shape's {numel * itemsize} bytes "
                      f"({dtype} {shape}), got {offsets}")
        entries.append((offsets[0], offsets[1], name,
                        TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])))

    # 4. The entries tile the data: contiguous, from 0 to the end of the file.
    entries.sort(key=lambda e: (e[0], e[1]))
    end = 0
    for start, stop, name, _ in entries:
        if start != end:
            why = "overlapping" if start < end else "a gap"
            raise DataError(path, f"contiguous tensor data; this tensor starts at data byte "
                                  f"{start}, expected {end} ({why})", field=name,
                            field_kind="tensor")
        end = stop
    if end != data_size:
        raise DataError(path, f"tensor data ending at the end of the file; the tensors cover "
                              f"{end} of its {data_size} data bytes", field="data_offsets",
                        field_kind="field")
    return Header(path, {name: info for _, _, name, info in entries}, dict(metadata), 8 + n)


# A shape pattern: an exact size, None (any size) or a name (the same size wherever the name
# appears in one check_layout call).
Dim = int | str | None


def check_layout(header: Header, expected: Mapping[str, tuple[str | Sequence[str],
                                                               Sequence[Dim]]],
                 *, optional: Sequence[str] = (), sizes: Mapping[str, int] | None = None,
                 extra: bool = False) -> dict[str, int]:
    """Check tensor names, dtypes and shapes of ``header`` against ``expected``.

    Args:
        header: a validated header.
        expected: name -> (dtype or dtypes, shape pattern); a pattern entry is an ``int``,
            ``None`` (any) or a name that must take one size throughout.
        optional: names of ``expected`` that may be absent.
        sizes: sizes of pattern names known beforehand.
        extra: allow tensors that ``expected`` does not name (default: ``False``).

    Returns:
        The size each pattern name took.

    Raises:
        DataError: a missing or unexpected tensor, or a dtype or shape that does not fit.
    """
    bound = dict(sizes or {})
    missing = [name for name in expected if name not in header.tensors and name not in optional]
    if missing:
        raise header.error(f"{_tensors(missing)}; missing (the file has "
                           f"{_few(list(header.tensors))})", missing[0])
    unknown = [name for name in header.tensors if name not in expected]
    if unknown and not extra:
        raise header.error(f"{'only ' + _tensors(list(expected)) if expected else 'no tensors'}"
                           f"; found {_tensors(unknown)} besides", unknown[0])
    for name, (dtypes, pattern) in expected.items():
        info = header.tensors.get(name)
        if info is None:
            continue
        dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
        if info.dtype not in dtypes:
            raise header.error(f"dtype {' or '.join(dtypes)}, got {info.dtype}", name)
        if len(info.shape) != len(pattern):
            raise header.error(f"shape {_shape(pattern, bound)}, got {list(info.shape)}", name)
        clash = None
        for d, actual in zip(pattern, info.shape):
            if isinstance(d, str):
                if bound.setdefault(d, actual) != actual:
                    clash = clash or f" ({d} = {bound[d]})"
            elif d is not None and d != actual:
                clash = clash or ""
        if clash is not None:
            raise header.error(f"shape {_shape(pattern, bound)}{clash}, got "
                               f"{list(info.shape)}", name)
    return bound


def _shape(pattern: Sequence[Dim], bound: Mapping[str, int]) -> str:
    """``[5, *]``: a shape pattern with the sizes known so far."""
    return "[" + ", ".join("*" if d is None else str(bound.get(d, d)) if isinstance(d, str)
                           else str(d) for d in pattern) + "]"


def _tensors(names: Sequence[str]) -> str:
    return f"the tensor{'s' if len(names) > 1 else ''} {_few(names)}"


def _few(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(x[:80]) for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "") if names else "none"


def read_tensors(
    path: str | os.PathLike[str],
    check: Callable[[Header], object] | None = None,
    names: Collection[str] | None = None,
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every tensor of the safetensors file ``path``, and its metadata (``{}`` without).

    The header is validated first (:func:`read_header`), then ``check(header)`` may refuse
    names and shapes, and only then are tensors allocated, at most the file's own size.

    The tensors are fresh allocations of torch's (64-byte aligned) allocator: one mapped from
    the file may sit off that alignment, and BLAS then takes another kernel path and rounds
    differently, so a saved and reloaded model would not score bit for bit as before.

    ``names`` reads only those tensors (default: all).

    Raises:
        DataError: a malformed file, one ``check`` refuses, or a ``BOOL`` tensor holding a
            byte other than 0 and 1.
    """
    header = read_header(path)
    if check is not None:
        check(header)
    wanted = [n for n in header.tensors if names is None or n in names]
    if sys.byteorder != "little":  # pragma: no cover - safetensors is little-endian.
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k).clone() for k in wanted}, header.metadata
    tensors: dict[str, Tensor] = {}
    try:
        with open(header.path, "rb") as f:
            for name in wanted:
                info = header.tensors[name]
                dtype = DTYPES[info.dtype][0]
                tensor = torch.empty(info.shape, dtype=dtype)
                view = tensor.reshape(-1).view(torch.uint8).numpy()  # the same memory
                f.seek(header.data_start + info.start)
                if info.nbytes and f.readinto(view) != info.nbytes:
                    raise header.error("a file that does not change while it is read; it "
                                       "ended early", name)
                if info.dtype == "BOOL" and info.nbytes and int(view.max()) > 1:
                    raise header.error("booleans stored as bytes 0 and 1", name)
                tensors[name] = tensor
    except OSError as err:
        raise DataError(header.path, f"a readable safetensors file ({err.strerror or err})") \
            from None
    return tensors, header.metadata


def check_finite(path: str | os.PathLike[str], tensors: Mapping[str, Tensor]) -> None:
    """Refuse NaN or infinite values in the floating-point tensors (weights never hold them)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel() and not torch.isfinite(tensor).all():
            raise DataError(path, "finite numbers; found NaN or infinity", field=name,
                            field_kind="tensor")
