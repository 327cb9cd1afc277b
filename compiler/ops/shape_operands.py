"""Which op inputs set a shape, an axis or a count rather than carry data.

An ahead-of-time target needs these values at compile time: a Reshape whose `shape` is a
graph input has no static output shape. `compiler.specialize.shape_setting_inputs` walks
back from these operand positions to find the graph inputs worth freezing.
"""

from __future__ import annotations

_REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
_WINDOWS = ("HannWindow", "HammingWindow", "BlackmanWindow")

# op type (default domain) -> indices of its shape-setting inputs
SHAPE_OPERANDS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}), "Expand": frozenset({1}), "Tile": frozenset({1}),
    "ConstantOfShape": frozenset({0}), "Range": frozenset({0, 1, 2}), "Pad": frozenset({1, 3}),
    "Slice": frozenset({1, 2, 3, 4}), "Resize": frozenset({1, 2, 3}), "Upsample": frozenset({1}),
    "TopK": frozenset({1}), "Split": frozenset({1}), "SplitToSequence": frozenset({1}), "OneHot": frozenset({1}),
    "Trilu": frozenset({1}), "CumSum": frozenset({1}), "CumProd": frozenset({1}),
    "Squeeze": frozenset({1}), "Unsqueeze": frozenset({1}), "CenterCropPad": frozenset({1, 2}),
    "AffineGrid": frozenset({1}), "Col2Im": frozenset({1, 2}), "DFT": frozenset({1, 2}), "STFT": frozenset({1, 3}),
    "MelWeightMatrix": frozenset({0, 1, 2, 3, 4}), "MaxUnpool": frozenset({2}), "Loop": frozenset({0}),
    **{op: frozenset({1}) for op in _REDUCTIONS},
    **{op: frozenset({0}) for op in _WINDOWS},
}

# Ops whose result depends only on their input's shape, not its values: walking back stops there.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
