"""Launch planning: work-group shapes and GEMM tiles chosen from what the device reports.

Kernels are compiled ahead of time, so the limits are those of the device named at compile
time (`device=` option: queried through pyopencl), or a conservative profile every OpenCL 1.2
GPU meets (256 work items per group, 32 KiB of local memory). The runtime refuses an artifact
whose work groups exceed the device it runs on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

WAVE = 32  # work items that run in lockstep on common GPUs: groups are sized in multiples of it
SLICE_DEPTH = 256  # reduction steps per k-slice at least, when a GEMM splits its sum (gemm_tile)
MAX_SLICES = 16


@dataclass(frozen=True)
class DeviceLimits:
    """What the launch planner may use."""

    name: str = "any OpenCL 1.2 device"
    max_work_group_size: int = 256
    max_work_item_sizes: tuple[int, int, int] = (256, 256, 64)
    local_mem_bytes: int = 32 * 1024
    extensions: tuple[str, ...] = ()
    compute_units: int = 16  # work groups that run at once, at least: small problems are split to fill them

    @classmethod
    def of_device(cls, device) -> "DeviceLimits":
        """The limits a pyopencl Device reports."""
        return cls(f"{device.platform.name.strip()} / {device.name.strip()}", int(device.max_work_group_size),
                   tuple(int(size) for size in device.max_work_item_sizes[:3]), int(device.local_mem_size),
                   tuple(sorted(device.extensions.split())), int(device.max_compute_units))

    @classmethod
    def query(cls, selector) -> "DeviceLimits":
        """The limits of the device `selector` picks (see runtime/gpu.py: select_device)."""
        from runtime.gpu import import_pyopencl, select_device

        return cls.of_device(select_device(import_pyopencl(), selector))

    def to_json(self) -> dict:
        values = asdict(self)
        values["max_work_item_sizes"] = list(self.max_work_item_sizes)
        values["extensions"] = list(self.extensions)
        return values


@dataclass(frozen=True)
class Launch:
    """An NDRange: global and local sizes (global a multiple of local in every dim). `entries`, set
    by kernels whose work along one dim follows their output's leading (batch) dim, is (that dim,
    its units of work at the compiled batch, units per work group): a dynamic batch launches only
    the groups of its first n entries (compiler/dynamic_batch.py)."""

    global_size: tuple[int, ...]
    local_size: tuple[int, ...]
    entries: tuple[int, int, int] | None = None

    def over_entries(self, units: int, axis: int = 0, per_group: int | None = None) -> "Launch":
        """This launch, its `units` of work along `axis` walking the output's batch outermost
        (per_group: units a work group covers, by default one per work item)."""
        return replace(self, entries=(axis, units, self.local_size[axis] if per_group is None else per_group))


@dataclass(frozen=True)
class GemmTile:
    """A work group of lx * ly items computes a (ly * wm) x (lx * wn) output tile, stepping tk
    along the reduction; item (x, y) owns rows y + i * ly and columns x + j * lx."""

    lx: int
    ly: int
    wm: int
    wn: int
    tk: int

    @property
    def rows(self) -> int:
        return self.ly * self.wm

    @property
    def columns(self) -> int:
        return self.lx * self.wn

    def local_bytes(self, element_bytes: int = 4) -> int:
        """Both staged tiles, one padding column each (against bank conflicts)."""
        return self.tk * (self.rows + 1 + self.columns + 1) * element_bytes


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def power_of_two_at_most(value: int) -> int:
    return 1 << (max(1, value).bit_length() - 1)


class LaunchPlanner:
    """Chooses NDRanges for the kernel families within DeviceLimits."""

    def __init__(self, limits: DeviceLimits):
        self.limits = limits

    @property
    def group_limit(self) -> int:
        return min(self.limits.max_work_group_size, self.limits.max_work_item_sizes[0])

    def linear(self, items: int, preferred: int = 256) -> Launch:
        """One work item per element: groups of `preferred` items at most (fewer for small ranges,
        rounded to a power of two so few distinct group sizes are compiled)."""
        local = min(power_of_two_at_most(self.group_limit), preferred, max(WAVE, 1 << (items - 1).bit_length()))
        return Launch((round_up(items, local),), (local,))

    def lanes(self, outputs: int, reduced: int) -> int:
        """Work items cooperating on one output of a reduction over `reduced` elements: one when
        rows are short and the outputs alone give every compute unit a few waves of items (every
        item loops alone), else a group that reduces in local memory (one wave for short rows)."""
        if reduced < 256:
            if reduced < WAVE or outputs >= self.limits.compute_units * WAVE * 4:
                return 1
            return min(WAVE, power_of_two_at_most(self.group_limit))
        wanted = 256 if reduced >= 4096 or outputs < 64 else 64
        return min(wanted, power_of_two_at_most(self.group_limit))

    def per_output(self, outputs: int, lanes: int) -> Launch:
        """`lanes` items per output: one group per output, or plain linear items when lanes is 1."""
        if lanes == 1:
            return self.linear(outputs).over_entries(outputs)
        return Launch((outputs * lanes,), (lanes,)).over_entries(outputs, per_group=1)

    def gemm_tile(self, rows: int, columns: int, element_bytes: int = 4, batch: int = 1) -> GemmTile:
        """The largest tile that neither wastes most of a small matrix nor exceeds the device, nor
        leaves compute units idle: a smaller one while the work groups are fewer than the units
        (where none fills them, the one with the most work items). Each output sums along k in the
        same order whatever the tile, so the choice never changes a result."""
        return self.split_gemm_tile(rows, columns, 0, element_bytes, batch)[0]

    def split_gemm_tile(self, rows: int, columns: int, depth: int, element_bytes: int = 4,
                        batch: int = 1) -> tuple[GemmTile, int]:
        """(tile, k-slices): as gemm_tile, but a deep sum (depth) may split into up to MAX_SLICES slices of
        SLICE_DEPTH steps or more, summed by a second kernel, so that a larger tile fills the units: a
        3x3 conv on a 7 x 7 map (49 columns, 4608 deep) runs 32 x 32 tiles in 5 slices, not 8 x 8 ones."""
        if rows <= 4:  # matrix-vector shaped: a row of items over the columns
            wn = 4 if columns >= 256 else 2 if columns >= 128 else 1
            candidates = [GemmTile(64, 1, max(rows, 1), wn, 16), GemmTile(32, 1, max(rows, 1), wn, 16),
                          GemmTile(16, 1, max(rows, 1), 1, 16)]
        elif columns <= 4:
            wm = 4 if rows >= 256 else 2 if rows >= 128 else 1
            candidates = [GemmTile(1, 64, wm, max(columns, 1), 16), GemmTile(1, 32, wm, max(columns, 1), 16),
                          GemmTile(1, 16, 1, max(columns, 1), 16)]
        else:
            small = min(rows, columns)
            candidates = [GemmTile(16, 16, 4, 4, 16)] if small >= 64 else []
            candidates += [GemmTile(16, 16, 2, 2, 16)] if small >= 32 else []
            candidates += [GemmTile(16, 16, 1, 1, 16), GemmTile(8, 8, 2, 2, 8), GemmTile(8, 8, 1, 1, 8)]
        fitting = [tile for tile in candidates if self.fits((tile.lx, tile.ly), tile.local_bytes(element_bytes))]
        if not fitting:
            return GemmTile(1, 1, 1, 1, 1), 1

        def groups(tile: GemmTile) -> int:
            return -(-rows // tile.rows) * -(-columns // tile.columns) * batch

        units = self.limits.compute_units
        most = max(1, min(MAX_SLICES, depth // SLICE_DEPTH))
        for tile in fitting:
            if groups(tile) >= units:
                return tile, 1
            if groups(tile) * most >= units:
                return tile, -(-units // groups(tile))
        return max(fitting, key=lambda tile: groups(tile) * tile.lx * tile.ly), 1

    def gemv(self, columns: int, depth: int, k_fast: bool, batch: int) -> tuple[int, int, Launch]:
        """(lanes splitting k, columns per group, NDRange) of a matrix-vector shaped product: a group
        of one wave of lanes per column where k is B's contiguous dim (each wave reads one run of B),
        else one wave of columns per lane."""
        group = min(256, power_of_two_at_most(self.group_limit))
        wave = min(WAVE, group)
        lanes = min(wave, power_of_two_at_most(depth)) if k_fast else max(1, min(group // wave,
                                                                                 power_of_two_at_most(depth)))
        per_group = group // lanes
        groups = -(-columns // per_group)
        return lanes, per_group, Launch((groups * group, 1, batch), (group, 1, 1))

    def fits(self, local: tuple[int, ...], local_bytes: int) -> bool:
        sizes = self.limits.max_work_item_sizes
        return math.prod(local) <= self.limits.max_work_group_size and local_bytes <= self.limits.local_mem_bytes \
            and all(size <= limit for size, limit in zip(local, sizes))

    def gemm(self, tile: GemmTile, rows: int, columns: int, batch: int) -> Launch:
        groups = (-(-columns // tile.columns), -(-rows // tile.rows), batch)
        return Launch((groups[0] * tile.lx, groups[1] * tile.ly, batch), (tile.lx, tile.ly, 1))
