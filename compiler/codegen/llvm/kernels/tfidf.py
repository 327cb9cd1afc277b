"""TfIdfVectorizer on integer tokens: n-gram counts (with skips) weighted by TF, IDF or TF-IDF.

The pool of n-grams is a compile-time attribute, so it is built into a trie in Python and
laid out breadth first: the children of a trie node are consecutive entries sorted by token,
found with a binary search. A work item is one row of X; for each skip distance d and start
position, the kernel walks the trie along tokens start, start + d, start + 2d, ... and counts
every pooled n-gram of a wanted length on the way. Unigrams are counted at d = 1 only, as in
the ONNX reference. String pools are refused (the cpu target holds no strings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I64, const_i64, convert, for_range, load, store
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import float_constant
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.ir.graph import Graph, Node

MODES = ("TF", "IDF", "TFIDF")
REQUIRED = ("mode", "min_gram_length", "max_gram_length", "max_skip_count", "ngram_counts", "ngram_indexes")


class InvalidPool(ValueError):
    """The n-gram pool cannot be compiled; the message says why."""


@dataclass(frozen=True)
class Trie:
    """Breadth-first trie of the pooled n-grams; entry 0 is the root. Entry i was reached by
    token keys[i]; its children are entries children_start[i]..children_end[i] - 1; reaching it
    completes an n-gram counted in output column columns[i] (-1: none)."""

    keys: np.ndarray
    children_start: np.ndarray
    children_end: np.ndarray
    columns: np.ndarray


def pooled_ngrams(node: Node) -> dict[tuple[int, ...], int]:
    """n-gram -> output column, for the lengths between min_gram_length and max_gram_length.

    ngram_counts[i] is where the (i + 1)-grams start in pool_int64s; n-grams are numbered
    across all lengths in pool order and n-gram k counts in column ngram_indexes[k]."""
    pool, starts = list(node.attrs.get("pool_int64s", [])), list(node.attrs["ngram_counts"])
    indexes = list(node.attrs["ngram_indexes"])
    shortest, longest = node.attrs["min_gram_length"], node.attrs["max_gram_length"]
    grams, number = {}, 0
    for length, start in enumerate(starts, 1):
        stop = starts[length] if length < len(starts) else len(pool)
        for first in range(start, stop - length + 1, length):
            if shortest <= length <= longest:
                if number >= len(indexes):
                    raise InvalidPool(f"TfIdfVectorizer has more pooled n-grams than ngram_indexes ({len(indexes)})")
                grams[tuple(pool[first:first + length])] = indexes[number]
            number += 1
    return grams


def build_trie(grams: dict[tuple[int, ...], int]) -> Trie:
    children: list[dict[int, int]] = [{}]
    columns = [-1]
    for gram, column in grams.items():
        entry = 0
        for token in gram:
            if token not in children[entry]:
                children[entry][token] = len(children)
                children.append({})
                columns.append(-1)
            entry = children[entry][token]
        columns[entry] = column
    order, keys = [0], [0]  # breadth-first: old entry numbers in their new order
    start, end = [], []
    for entry in order:
        start.append(len(order))
        for token, child in sorted(children[entry].items()):
            order.append(child)
            keys.append(token)
        end.append(len(order))
    as_array = lambda values: np.array(values, np.int64)  # noqa: E731
    return Trie(as_array(keys), as_array(start), as_array(end), as_array([columns[entry] for entry in order]))


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    missing = [name for name in REQUIRED if name not in node.attrs]
    if missing:
        return f"TfIdfVectorizer needs the attributes {', '.join(missing)}"
    if x.dtype not in ("int32", "int64"):
        return f"TfIdfVectorizer on {x.dtype} tokens is not compiled by the cpu target (only int32/int64 pools)"
    if node.attrs.get("pool_strings") and not node.attrs.get("pool_int64s"):
        return "TfIdfVectorizer with a string pool is not compiled by the cpu target"
    if node.attrs.get("mode") not in MODES:
        return f"TfIdfVectorizer mode {node.attrs.get('mode')!r} is not one of {', '.join(MODES)}"
    if len(x.shape) not in (1, 2):
        return f"TfIdfVectorizer needs tokens of shape [C] or [B, C], not {x.shape}"
    width = node.outputs[0].shape[-1]
    indexes = list(node.attrs["ngram_indexes"])
    if not indexes or min(indexes) < 0 or max(indexes) + 1 != width:
        return f"TfIdfVectorizer ngram_indexes must lie in 0..{width - 1} and reach the last output column"
    weights = node.attrs.get("weights")
    if weights is not None and len(weights) < width:
        return f"TfIdfVectorizer has {len(weights)} weights for {width} output columns"
    try:
        pooled_ngrams(node)
    except InvalidPool as reason:
        return str(reason)
    return None


def _find_child(b: ir.IRBuilder, keys: Table, start: ir.Value, end: ir.Value, token: ir.Value) -> ir.Value:
    """The entry in [start, end) whose key is `token` (keys sorted), or -1: a binary search."""
    entry = b.block
    header, body, done = (b.append_basic_block(f"search.{part}") for part in ("header", "body", "done"))
    b.branch(header)
    b.position_at_end(header)
    low, high = b.phi(I64, name="low"), b.phi(I64, name="high")
    low.add_incoming(start, entry)
    high.add_incoming(end, entry)
    b.cbranch(b.icmp_signed("<", low, high), body, done)
    b.position_at_end(body)
    middle = b.lshr(b.add(low, high), const_i64(1))
    below = b.icmp_signed("<", keys.load(b, middle), token)
    low.add_incoming(b.select(below, b.add(middle, const_i64(1)), low), body)
    high.add_incoming(b.select(below, high, middle), body)
    b.branch(header)
    b.position_at_end(done)
    inside = b.icmp_signed("<", low, end)
    candidate = b.select(inside, low, const_i64(0))  # an empty range reads entry 0, never past the table
    hit = b.and_(inside, b.icmp_signed("==", keys.load(b, candidate), token))
    return b.select(hit, low, const_i64(-1))


def _count_from(ctx: KernelContext, tables: dict, x: TensorArg, y: TensorArg, row_in: ir.Value, row_out: ir.Value,
                first: ir.Value, distance: ir.Value, shortest: ir.Value) -> None:
    """Walk the trie along tokens first, first + distance, ...; add 1 to the column of each
    pooled n-gram of at least `shortest` tokens met on the way."""
    b, node = ctx.builder, ctx.node
    tokens, longest = x.shape[-1], node.attrs["max_gram_length"]
    entry = b.block
    header, body, hit, done = (b.append_basic_block(f"walk.{part}") for part in ("header", "body", "hit", "done"))
    b.branch(header)
    b.position_at_end(header)
    length, trie_entry = b.phi(I64, name="length"), b.phi(I64, name="entry")
    length.add_incoming(const_i64(1), entry)
    trie_entry.add_incoming(const_i64(0), entry)
    item = b.add(first, b.mul(b.sub(length, const_i64(1)), distance))
    more = b.and_(b.icmp_signed("<=", length, const_i64(longest)), b.icmp_signed("<", item, const_i64(tokens)))
    b.cbranch(more, body, done)
    b.position_at_end(body)
    token = convert(b, load(b, x.ptr, x.dtype, b.add(row_in, item)), x.dtype, "int64")
    child = _find_child(b, tables["keys"], tables["children_start"].load(b, trie_entry),
                        tables["children_end"].load(b, trie_entry), token)
    b.cbranch(b.icmp_signed(">=", child, const_i64(0)), hit, done)
    b.position_at_end(hit)
    column = tables["columns"].load(b, child)
    counted = b.and_(b.icmp_signed(">=", length, shortest), b.icmp_signed(">=", column, const_i64(0)))
    with b.if_then(counted):
        slot = b.add(row_out, column)
        store(b, b.fadd(load(b, y.ptr, y.dtype, slot), float_constant(F32, 1.0)), y.ptr, y.dtype, slot)
    length.add_incoming(b.add(length, const_i64(1)), b.block)
    trie_entry.add_incoming(child, b.block)
    b.branch(header)
    b.position_at_end(done)


def _emit(ctx: KernelContext) -> None:
    b, node, x, y = ctx.builder, ctx.node, ctx.inputs[0], ctx.outputs[0]
    trie = build_trie(pooled_ngrams(node))
    tables = {name: Table(ctx.module, getattr(trie, name), f"kiln.tfidf.{name}")
              for name in ("keys", "children_start", "children_end", "columns")}
    tokens, width = x.shape[-1], y.shape[-1]
    shortest, longest = node.attrs["min_gram_length"], node.attrs["max_gram_length"]
    distances = 1 + node.attrs["max_skip_count"] if longest > 1 else 1  # skips only matter past unigrams
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        row_in, row_out = b.mul(row, const_i64(tokens)), b.mul(row, const_i64(width))
        with for_range(b, 0, width, name="zero") as column:
            store(b, float_constant(F32, 0.0), y.ptr, y.dtype, b.add(row_out, column))
        with for_range(b, 1, distances + 1, name="distance") as distance:
            wanted = b.select(b.icmp_signed("==", distance, const_i64(1)), const_i64(shortest),
                              const_i64(max(shortest, 2)))
            with for_range(b, 0, tokens, name="first") as first:
                _count_from(ctx, tables, x, y, row_in, row_out, first, distance, wanted)
        _weigh(ctx, y, row_out)


def _weigh(ctx: KernelContext, y: TensorArg, row_out: ir.Value) -> None:
    """TF keeps the counts; IDF gives weights[i] (or 1) where the count is not 0; TFIDF weights[i] * count."""
    b, mode, weights = ctx.builder, ctx.node.attrs["mode"], ctx.node.attrs.get("weights")
    if mode == "TF" or (mode == "TFIDF" and weights is None):
        return
    width = y.shape[-1]
    table = Table(ctx.module, np.asarray(weights[:width] if weights is not None else np.ones(width), np.float32),
                  "kiln.tfidf.weights")
    zero = float_constant(F32, 0.0)
    with for_range(b, 0, width, name="weigh") as column:
        slot = b.add(row_out, column)
        count, weight = load(b, y.ptr, y.dtype, slot), table.load(b, column)
        result = b.fmul(weight, count) if mode == "TFIDF" else b.select(b.fcmp_ordered(">", count, zero), weight, zero)
        store(b, result, y.ptr, y.dtype, slot)


register_kernel(KernelSpec(("TfIdfVectorizer",), _check,
                           lambda graph, node: 1 if len(graph.input_types(node)[0].shape) == 1
                           else graph.input_types(node)[0].shape[0], _emit))
