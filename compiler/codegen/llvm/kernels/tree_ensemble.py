"""TreeEnsemble (ai.onnx.ml opset 5): decision-tree forests read from the node's attributes.

The tree tables are checked and flattened at compile time into constant tables (struct of
arrays, one row per branch node) that a table-driven loop walks: from a tree's root, each
branch compares one feature with its split and moves to its true or false child until a
leaf. A child reference is a node index (>= 0) or a leaf, coded -1 - leaf. Only the
comparisons of the modes the model uses are emitted; set membership scans the node's
members. A work item is one row of X: it walks every tree and aggregates the leaf weights
into the row's n_targets outputs, then applies the post transform to the row.

Like the ONNX reference, features are compared with splits in double and each leaf weight
is combined with the running score in double, then rounded to the output dtype. Semantics
follow the ONNX specification where onnx.reference departs from it: the k-th BRANCH_MEMBER
node in nodes_modes order tests the k-th NaN-delimited set of membership_values, a root whose
two branches name one leaf is that leaf, and the post transforms are applied (the reference
skips them). MIN/MAX of a target no leaf reaches stay at the dtype's max/lowest, as in the
reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, I8, I64, const_i64, convert, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic, select_max
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.ir.graph import Graph, Node

LEQ, LT, GTE, GT, EQ, NEQ, MEMBER = range(7)
AVERAGE, SUM, MIN, MAX = range(4)
NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT = range(5)
NODE_ATTRIBUTES = ("nodes_featureids", "nodes_splits", "nodes_modes", "nodes_truenodeids", "nodes_trueleafs",
                   "nodes_falsenodeids", "nodes_falseleafs")
FLOATS = ("float32", "float64")


class InvalidForest(ValueError):
    """The tree tables cannot be compiled; the message says why."""


@dataclass(frozen=True)
class Forest:
    """The flattened, checked tree tables (numpy arrays, one entry per branch node unless named)."""

    features: np.ndarray
    splits: np.ndarray  # float64
    modes: np.ndarray  # uint8
    missing_true: np.ndarray  # uint8: a NaN feature takes the true branch
    true_next: np.ndarray  # node index, or -1 - leaf
    false_next: np.ndarray
    member_start: np.ndarray  # members[member_start[i]:member_end[i]] is node i's set
    member_end: np.ndarray
    members: np.ndarray  # float64
    roots: np.ndarray  # per tree: node index, or -1 - leaf
    leaf_targets: np.ndarray  # per leaf
    leaf_weights: np.ndarray  # per leaf, float64 (already divided by the tree count for AVERAGE)
    targets: int
    aggregate: int
    post_transform: int


def _array(node: Node, name: str, dtype) -> np.ndarray:
    return np.asarray(node.attrs[name], dtype=dtype).reshape(-1)


def _member_sets(node: Node, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, members): the NaN-delimited sets of membership_values, given to the
    BRANCH_MEMBER nodes in nodes_modes order."""
    values = _array(node, "membership_values", np.float64) if "membership_values" in node.attrs else np.zeros(0)
    breaks = np.flatnonzero(np.isnan(values))
    bounds = list(zip(np.concatenate([[0], breaks + 1]), np.concatenate([breaks, [len(values)]])))
    if bounds and bounds[-1][0] == len(values):
        bounds.pop()  # the values end with a NaN: no set after it
    members = np.flatnonzero(modes == MEMBER)
    if len(bounds) != len(members):
        raise InvalidForest(f"TreeEnsemble has {len(members)} BRANCH_MEMBER nodes but membership_values "
                            f"holds {len(bounds)} NaN-delimited sets")
    start, end = np.zeros(len(modes), np.int64), np.zeros(len(modes), np.int64)
    for index, (low, high) in zip(members, bounds):
        start[index], end[index] = low, high
    return start, end, np.where(np.isnan(values), 0.0, values)


def _child(node_index: int, leaf: bool, limit: int, which: str) -> int:
    if not 0 <= node_index < limit:
        kind = "leaf" if leaf else "node"
        raise InvalidForest(f"TreeEnsemble {which} {kind} index {node_index} is out of range (0..{limit - 1})")
    return -1 - node_index if leaf else node_index


def _check_trees(forest: Forest, feature_count: int) -> None:
    """Every tree reaches each of its nodes once (no cycles) and reads features that X has."""
    for root in forest.roots:
        pending, seen = [int(root)], set()
        while pending:
            index = pending.pop()
            if index < 0:
                continue
            if index in seen:
                raise InvalidForest(f"TreeEnsemble node {index} is reached twice from one root "
                                    "(the tables are not trees)")
            seen.add(index)
            if not 0 <= forest.features[index] < feature_count:
                raise InvalidForest(f"TreeEnsemble node {index} reads feature {forest.features[index]}, "
                                    f"but X has {feature_count}")
            pending += [int(forest.true_next[index]), int(forest.false_next[index])]


def forest_of(graph: Graph, node: Node) -> Forest:
    """The node's tree tables, flattened; raises InvalidForest when they cannot be compiled."""
    missing = [name for name in (*NODE_ATTRIBUTES, "leaf_targetids", "leaf_weights", "tree_roots")
               if name not in node.attrs]
    if missing:
        raise InvalidForest(f"TreeEnsemble needs the attributes {', '.join(missing)}")
    columns = {name: _array(node, name, np.float64 if name == "nodes_splits" else np.int64)
               for name in NODE_ATTRIBUTES}
    if "nodes_missing_value_tracks_true" in node.attrs:
        columns["missing"] = _array(node, "nodes_missing_value_tracks_true", np.int64)
    sizes = {len(column) for column in columns.values()}
    if len(sizes) != 1:
        raise InvalidForest("TreeEnsemble nodes_* attributes have different lengths")
    count = sizes.pop()
    modes = columns["nodes_modes"]
    if count == 0 or np.any((modes < LEQ) | (modes > MEMBER)):
        raise InvalidForest("TreeEnsemble needs nodes whose modes are 0 (BRANCH_LEQ) to 6 (BRANCH_MEMBER)")
    targets, weights = _array(node, "leaf_targetids", np.int64), _array(node, "leaf_weights", np.float64)
    n_targets = node.outputs[0].shape[-1]
    if len(targets) != len(weights) or np.any((targets < 0) | (targets >= n_targets)):
        raise InvalidForest(f"TreeEnsemble leaf_targetids must pair with leaf_weights and lie in 0..{n_targets - 1}")
    aggregate, post_transform = node.attrs.get("aggregate_function", SUM), node.attrs.get("post_transform", NONE)
    if aggregate not in (AVERAGE, SUM, MIN, MAX):
        raise InvalidForest(f"TreeEnsemble aggregate_function {aggregate} is not 0 (AVERAGE) to 3 (MAX)")
    if post_transform not in (NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT):
        raise InvalidForest(f"TreeEnsemble post_transform {post_transform} is not 0 (NONE) to 4 (PROBIT)")

    def children(side: str) -> np.ndarray:
        ids, leafs = columns[f"nodes_{side}nodeids"], columns[f"nodes_{side}leafs"]
        return np.array([_child(int(i), bool(leaf), len(weights) if leaf else count, side)
                         for i, leaf in zip(ids, leafs)], np.int64)

    true_next, false_next = children("true"), children("false")
    roots = []
    for root in node.attrs["tree_roots"]:
        if not 0 <= root < count:
            raise InvalidForest(f"TreeEnsemble tree root {root} is out of range (0..{count - 1})")
        single_leaf = true_next[root] == false_next[root] < 0  # both branches name one leaf: the tree is that leaf
        roots.append(true_next[root] if single_leaf else root)
    start, end, members = _member_sets(node, modes)
    scale = len(roots) if aggregate == AVERAGE else 1
    forest = Forest(columns["nodes_featureids"], columns["nodes_splits"], modes.astype(np.uint8),
                    columns.get("missing", np.zeros(count, np.int64)).astype(np.uint8), true_next, false_next,
                    start, end, members, np.array(roots, np.int64), targets, weights / scale,
                    n_targets, aggregate, post_transform)
    _check_trees(forest, graph.input_types(node)[0].shape[-1])
    return forest


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if x.dtype not in FLOATS:
        return f"TreeEnsemble on {x.dtype} is not compiled by the cpu target (it handles float32, float64)"
    y = node.outputs[0]
    if len(x.shape) != 2 or y.shape != (x.shape[0], node.attrs.get("n_targets", y.shape[-1])):
        return f"TreeEnsemble needs X of shape [N, F] and Y of shape [N, n_targets] (got {x.shape} -> {y.shape})"
    try:
        forest_of(graph, node)
    except InvalidForest as reason:
        return str(reason)
    return None


class _Tables:
    """The forest's arrays as constant globals of the module."""

    def __init__(self, module: ir.Module, forest: Forest):
        for name in ("features", "splits", "modes", "missing_true", "true_next", "false_next", "member_start",
                     "member_end", "members", "roots", "leaf_targets", "leaf_weights"):
            setattr(self, name, Table(module, getattr(forest, name), f"kiln.trees.{name}"))


def _member(b: ir.IRBuilder, tables: _Tables, found: ir.Value, code: ir.Value, value: ir.Value) -> ir.Value:
    """Whether `value` is in node `code`'s member set (a scan of its members)."""
    b.store(ir.Constant(I8, 0), found)
    with for_range(b, tables.member_start.load(b, code), tables.member_end.load(b, code), name="member") as i:
        equal = b.zext(b.fcmp_ordered("==", value, tables.members.load(b, i)), I8)
        b.store(b.or_(b.load(found, typ=I8), equal), found)
    return b.trunc(b.load(found, typ=I8), I1)


def _goes_true(b: ir.IRBuilder, forest: Forest, tables: _Tables, found: ir.Value, code: ir.Value,
               value: ir.Value) -> ir.Value:
    """Branch node `code`'s test on the feature `value` (double), for the modes the forest uses."""
    split = tables.splits.load(b, code)
    tests = {LEQ: lambda: b.fcmp_ordered("<=", value, split), LT: lambda: b.fcmp_ordered("<", value, split),
             GTE: lambda: b.fcmp_ordered(">=", value, split), GT: lambda: b.fcmp_ordered(">", value, split),
             EQ: lambda: b.fcmp_ordered("==", value, split), NEQ: lambda: b.fcmp_unordered("!=", value, split),
             MEMBER: lambda: _member(b, tables, found, code, value)}
    used = sorted({int(mode) for mode in forest.modes})
    result = tests[used[0]]()
    if len(used) > 1:
        mode = tables.modes.load(b, code)
        for other in used[1:]:
            result = b.select(b.icmp_unsigned("==", mode, ir.Constant(I8, other)), tests[other](), result)
    if forest.missing_true.any():
        tracks = b.icmp_unsigned("!=", tables.missing_true.load(b, code), ir.Constant(I8, 0))
        result = b.or_(result, b.and_(b.fcmp_unordered("uno", value, value), tracks))
    return result


def _walk(b: ir.IRBuilder, forest: Forest, tables: _Tables, found: ir.Value, x: TensorArg, row_start: ir.Value,
          tree: ir.Value) -> ir.Value:
    """The leaf (i64) that row `row_start` of X reaches in `tree`."""
    root = tables.roots.load(b, tree)
    entry = b.block
    header, body, done = (b.append_basic_block(f"walk.{part}") for part in ("header", "body", "done"))
    b.branch(header)
    b.position_at_end(header)
    code = b.phi(I64, name="code")
    code.add_incoming(root, entry)
    b.cbranch(b.icmp_signed(">=", code, const_i64(0)), body, done)
    b.position_at_end(body)
    value = convert(b, load(b, x.ptr, x.dtype, b.add(row_start, tables.features.load(b, code))), x.dtype, "float64")
    following = b.select(_goes_true(b, forest, tables, found, code, value),
                         tables.true_next.load(b, code), tables.false_next.load(b, code))
    code.add_incoming(following, b.block)
    b.branch(header)
    b.position_at_end(done)
    return b.sub(const_i64(-1), code)


def _combine(b: ir.IRBuilder, aggregate: int, score: ir.Value, weight: ir.Value) -> ir.Value:
    """The running score (double) after one more leaf weight; MIN/MAX keep the score unless the
    weight is strictly lower/higher (a NaN weight changes nothing)."""
    if aggregate in (AVERAGE, SUM):
        return b.fadd(score, weight)
    return b.select(b.fcmp_ordered("<" if aggregate == MIN else ">", weight, score), weight, score)


def _start_score(value_type: ir.Type, dtype: str, aggregate: int) -> ir.Constant:
    if aggregate in (AVERAGE, SUM):
        return float_constant(value_type, 0.0)
    info = np.finfo(np.float32 if dtype == "float32" else np.float64)
    return float_constant(value_type, float(info.max if aggregate == MIN else info.min))


def _emit(ctx: KernelContext) -> None:
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    forest = forest_of(ctx.graph, ctx.node)
    tables = _Tables(ctx.module, forest)
    features, targets = x.shape[1], forest.targets
    value_type = element_type(y.dtype)
    found, slot = b.alloca(I8, name="found"), b.alloca(value_type, name="slot")
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        row_start, out_start = b.mul(row, const_i64(features)), b.mul(row, const_i64(targets))
        with for_range(b, 0, targets, name="target") as target:
            store(b, _start_score(value_type, y.dtype, forest.aggregate), y.ptr, y.dtype, b.add(out_start, target))
        with for_range(b, 0, len(forest.roots), name="tree") as tree:
            leaf = _walk(b, forest, tables, found, x, row_start, tree)
            place = b.add(out_start, tables.leaf_targets.load(b, leaf))
            score = convert(b, load(b, y.ptr, y.dtype, place), y.dtype, "float64")
            score = _combine(b, forest.aggregate, score, tables.leaf_weights.load(b, leaf))
            store(b, convert(b, score, "float64", y.dtype), y.ptr, y.dtype, place)
        _post_transform(b, forest.post_transform, y, out_start, targets, slot)


# ----- post transforms (over one output row of `count` scores) ---------------------------------
def _each(b: ir.IRBuilder, y: TensorArg, start: ir.Value, count: int, name: str, visit) -> None:
    """visit(score) for each score of the row; a returned value replaces the score."""
    with for_range(b, 0, count, name=name) as i:
        index = b.add(start, i)
        result = visit(load(b, y.ptr, y.dtype, index))
        if result is not None:
            store(b, result, y.ptr, y.dtype, index)


def _softmax(b: ir.IRBuilder, y: TensorArg, start: ir.Value, count: int, slot: ir.Value, keep_zeros: bool) -> None:
    """exp(v - max) / sum; SOFTMAX_ZERO leaves (near-)zero scores at v * exp(-max), as ONNX Runtime does.
    `slot` holds the running max, then the running sum."""
    value_type = element_type(y.dtype)

    def find_max(v):
        b.store(select_max(b, b.load(slot, typ=value_type), v, "float"), slot)

    def exponentiate(v):
        result = intrinsic(b, "exp", b.fsub(v, peak))
        if keep_zeros:
            nonzero = b.fcmp_ordered(">", intrinsic(b, "fabs", v), float_constant(value_type, 1e-7))
            result = b.select(nonzero, result, b.fmul(v, intrinsic(b, "exp", b.fneg(peak))))
        b.store(b.fadd(b.load(slot, typ=value_type), result), slot)
        return result

    b.store(load(b, y.ptr, y.dtype, start), slot)
    _each(b, y, start, count, "max", find_max)
    peak = b.load(slot, typ=value_type)
    b.store(float_constant(value_type, 0.0), slot)
    _each(b, y, start, count, "exp", exponentiate)
    total = b.load(slot, typ=value_type)
    _each(b, y, start, count, "divide", lambda v: b.fdiv(v, total))


def _logistic(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """1 / (1 + exp(-|v|)), mirrored for v < 0 so exp never overflows."""
    one = float_constant(v.type, 1.0)
    half = b.fdiv(one, b.fadd(one, intrinsic(b, "exp", b.fneg(intrinsic(b, "fabs", v)))))
    return b.select(b.fcmp_ordered("<", v, float_constant(v.type, 0.0)), b.fsub(one, half), half)


def _probit(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """sqrt(2) * erfinv(2v - 1), erfinv by Winitzki's approximation (a = 0.147), as ONNX Runtime."""
    def f(value: float) -> ir.Constant:
        return float_constant(v.type, value)

    x = b.fsub(b.fmul(f(2.0), v), f(1.0))
    log = intrinsic(b, "log", b.fmul(b.fsub(f(1.0), x), b.fadd(f(1.0), x)))
    first = b.fadd(f(2 / (math.pi * 0.147)), b.fmul(f(0.5), log))
    discriminant = b.fsub(b.fmul(first, first), b.fmul(f(1 / 0.147), log))
    root = intrinsic(b, "sqrt", b.fsub(intrinsic(b, "sqrt", discriminant), first))
    return b.fmul(f(math.sqrt(2)), b.select(b.fcmp_ordered("<", x, f(0.0)), b.fneg(root), root))


def _post_transform(b: ir.IRBuilder, kind: int, y: TensorArg, start: ir.Value, count: int, slot: ir.Value) -> None:
    if kind in (SOFTMAX, SOFTMAX_ZERO):
        _softmax(b, y, start, count, slot, keep_zeros=kind == SOFTMAX_ZERO)
    elif kind != NONE:
        transform = _logistic if kind == LOGISTIC else _probit
        _each(b, y, start, count, "transform", lambda v: transform(b, v))


register_kernel(KernelSpec(("ai.onnx.ml::TreeEnsemble",), _check,
                           lambda graph, node: graph.input_types(node)[0].shape[0], _emit))
