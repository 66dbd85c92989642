"""Arrow columns built from numpy arrays, without a Python loop over rows.

Text columns are assembled from small vocabularies of pre-rendered text: `take`
picks entries by index and `join` concatenates the pieces row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sandbox import schema
from sandbox.generator.timing import DAY
from sandbox.generator.typing import I64, U64, Bool

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_text(words: U64) -> pa.Array:
    """Lowercase hex text of each row of 64-bit words, 16 characters a word."""
    rows = np.ascontiguousarray(words.reshape(len(words), -1), dtype=">u8")
    raw = rows.view(np.uint8).reshape(len(rows), -1)

    chars = np.empty((len(raw), raw.shape[1] * 2), dtype=np.uint8)
    chars[:, 0::2] = _HEX_DIGITS[raw >> 4]
    chars[:, 1::2] = _HEX_DIGITS[raw & 15]

    width = chars.shape[1]
    offsets = np.arange(0, (len(raw) + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        len(raw), pa.py_buffer(offsets), pa.py_buffer(chars)
    )


def take(vocabulary: pa.Array, index: npt.NDArray[Any]) -> pa.Array:
    """The vocabulary entries at `index`, a null wherever `index` is negative."""
    if index.size and index.min() < 0:
        return pc.take(vocabulary, pa.array(index, mask=index < 0))
    return pc.take(vocabulary, pa.array(index))


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate text columns row by row; a null part makes a null row."""
    return pc.binary_join_element_wise(*parts, "")


def scatter(values: pa.Array, mask: Bool) -> pa.Array:
    """Spread `values` (one per true entry of `mask`) over all rows, nulls between."""
    index = np.cumsum(mask, dtype=np.int64) - 1
    return pc.take(values, pa.array(index, mask=~mask))


def timestamps(micros: I64) -> pa.Array:
    """A timestamp column from microseconds since the epoch."""
    return pa.array(micros, type=schema.TIMESTAMP)


def days(micros: I64) -> pa.Array:
    """The UTC date of each moment, as a date column."""
    return pa.array((micros // DAY).astype(np.int32), type=pa.date32())


def text_array(values: Sequence[str | None]) -> pa.Array:
    """A string column; `None` entries are nulls."""
    return pa.array(values, type=pa.string())


def random_words(rng: np.random.Generator, shape: int | tuple[int, int]) -> U64:
    """Uniform random 64-bit words, the raw bits of trace and span ids."""
    return rng.integers(0, 2**64 - 1, size=shape, dtype=np.uint64, endpoint=True)


def constant(value: str, count: int) -> pa.Array:
    """A string column holding `value` on every row."""
    return pa.repeat(pa.scalar(value, type=pa.string()), count)
