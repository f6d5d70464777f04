"""TFLite's sparse tensor format: a constant stored as its kept values plus an index.

The converter writes it for ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY`` (a pruned model's
weights, each followed by a DENSIFY op that LiteRT runs once at Prepare). The schema's
``SparsityParameters`` describe the tensor as ``n`` dimensions: the tensor's own (each
divided by its block size, if blocked) and then one per block dimension (``block_map[b]``:
the tensor dimension block ``b`` splits). ``traversal_order`` is the order in which the
stored values walk those dimensions; ``dim_metadata[i]`` says how level ``i`` is stored:
DENSE (every coordinate, ``dense_size`` of them) or SPARSE_CSR (for each position of the
level above, ``array_segments[p]..array_segments[p + 1]`` into ``array_indices``, the
coordinates that are kept). The values buffer holds one value per position of the last
level, in that order.

Only LiteRT reads the format. TFLM reads no sparsity parameters (tensorflow/lite/micro
has no reader of them, and no DENSIFY kernel); Vela ignores them ("contains sparsity
information, which is not supported and will be ignored"). ``densify`` gives the dense
tensor every check and statistic reads, and validates the index against the tensor's
shape and values on the way: the file is untrusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DENSE, SPARSE_CSR = 0, 1
# The dense tensors densify builds (a position and an offset per kept value, int64): the
# largest sparse layers of real models are a few million weights (MobileNet's widest: 1M).
MAX_ELEMENTS = 1 << 24


@dataclass(frozen=True, slots=True)
class Level:
    """One ``DimensionMetadata``: DENSE with ``dense_size``, or SPARSE_CSR with arrays."""

    format: int
    dense_size: int
    segments: np.ndarray | None
    indices: np.ndarray | None


@dataclass(frozen=True, slots=True)
class SparseLayout:
    traversal_order: tuple[int, ...]
    block_map: tuple[int, ...]
    levels: tuple[Level, ...]


class SparseFormatError(ValueError):
    """The layout does not describe the tensor: why, in one line."""


def densify(layout: SparseLayout, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The dense tensor of ``shape`` whose kept ``values`` (1-D, stored order) ``layout``
    places; a SparseFormatError for any inconsistency (nothing is read out of range)."""
    rank, order, blocks = len(shape), layout.traversal_order, layout.block_map
    count = rank + len(blocks)
    if sorted(order) != list(range(count)) or len(layout.levels) != count:
        raise SparseFormatError(
            f"its traversal order {list(order)[:16]} and {len(layout.levels)} dimension "
            f"entries do not describe {count} dimensions (rank {rank}, {len(blocks)} blocks)"
        )
    if len(set(blocks)) != len(blocks) or any(not 0 <= d < rank for d in blocks):
        raise SparseFormatError(f"its block map {list(blocks)} does not name distinct "
                                f"dimensions of its shape {list(shape)}")  # fmt: skip
    elements = math.prod(shape)
    if elements > MAX_ELEMENTS:
        raise SparseFormatError(
            f"its dense shape {list(shape)} has {elements:,} elements; edgec expands sparse "
            f"tensors of up to {MAX_ELEMENTS:,}"
        )
    sizes, strides = _dimensions(layout, shape)
    position = np.zeros(1, np.int64)  # positions of the current level
    offset = np.zeros(1, np.int64)  # the dense element each position's prefix points at
    for i, level in enumerate(layout.levels):
        size = sizes[order[i]]
        if level.format == DENSE:
            if level.dense_size != size:
                raise SparseFormatError(
                    f"level {i} is dense with {level.dense_size} entries, but its dimension "
                    f"has {size}"
                )
            if len(position) * size > elements:  # checked before the product is made
                raise SparseFormatError(f"level {i} addresses more entries than its shape holds")
            coordinate = np.arange(size, dtype=np.int64)
            position = (position[:, None] * size + coordinate).ravel()
            offset = (offset[:, None] + coordinate * strides[order[i]]).ravel()
        elif level.format == SPARSE_CSR:
            position, coordinate, parent = _csr_level(level, position, size, elements, i)
            offset = offset[parent] + coordinate * strides[order[i]]
        else:
            raise SparseFormatError(f"level {i} has storage format {level.format}, "
                                    "neither DENSE nor SPARSE_CSR")  # fmt: skip
    if len(position) != len(values) or (len(position) and int(position.max()) >= len(values)):
        raise SparseFormatError(
            f"its index places {len(position):,} values, but its buffer holds {len(values):,}"
        )
    dense = np.zeros(elements, values.dtype)
    dense[offset] = values[position]
    return dense.reshape(shape)


def _dimensions(layout: SparseLayout, shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """The size of each of the layout's dimensions and the dense stride it moves by."""
    rank = len(shape)
    dense_strides = [math.prod(shape[d + 1 :]) for d in range(rank)]
    block_sizes = {}
    for b, d in enumerate(layout.block_map):
        level = layout.levels[layout.traversal_order.index(rank + b)]
        if level.format != DENSE or level.dense_size < 1 or shape[d] % level.dense_size:
            raise SparseFormatError(
                f"block {b} of dimension {d} (size {shape[d]}) is not a dense block that divides it"
            )
        block_sizes[d] = level.dense_size
    sizes = [shape[d] // block_sizes.get(d, 1) for d in range(rank)]
    strides = [dense_strides[d] * block_sizes.get(d, 1) for d in range(rank)]
    for d in layout.block_map:
        sizes.append(block_sizes[d])
        strides.append(dense_strides[d])
    return sizes, strides


def _csr_level(
    level: Level, parent_positions: np.ndarray, size: int, elements: int, i: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A SPARSE_CSR level's positions, coordinates, and each one's parent (an index into
    ``parent_positions``)."""
    segments, indices = level.segments, level.indices
    if segments is None or indices is None or len(segments) < 1:
        raise SparseFormatError(f"level {i} is SPARSE_CSR without segments and indices")
    segments = segments.astype(np.int64)
    if (
        len(parent_positions) and int(parent_positions.max()) + 1 >= len(segments)
        or segments[0] != 0 or np.any(np.diff(segments) < 0) or segments[-1] > len(indices)
    ):  # fmt: skip
        raise SparseFormatError(
            f"level {i}'s {len(segments):,} segments do not cover its {len(indices):,} "
            f"indices for {len(parent_positions):,} positions"
        )
    starts, ends = segments[parent_positions], segments[parent_positions + 1]
    counts = ends - starts
    total = int(counts.sum())
    if total > elements:
        raise SparseFormatError(f"level {i} addresses more entries than its shape holds")
    parent = np.repeat(np.arange(len(parent_positions)), counts)
    # each parent's run of kept coordinates: starts[p], starts[p] + 1, ..., ends[p] - 1
    position = (
        np.repeat(starts, counts) + np.arange(total) - np.repeat(counts.cumsum() - counts, counts)
    )
    coordinate = indices.astype(np.int64)[position]
    if len(coordinate) and (coordinate.min() < 0 or coordinate.max() >= size):
        raise SparseFormatError(f"level {i} has an index outside its dimension of {size}")
    return position, coordinate, parent
