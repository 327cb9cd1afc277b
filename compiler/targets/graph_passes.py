"""The graph passes the kernel targets share, each with the line saying why it is in a pipeline.

The cpu and gpu pipelines are built from these (compiler/targets/cpu.py, gpu.py), so a pass and
its reason are written once; `kernel` names what the target's kernels are in the reasons.
"""

from __future__ import annotations

from compiler.passes.manager import PassSpec


def shared_passes(target: str, kernel: str) -> dict[str, PassSpec]:
    return {
        "fold": PassSpec("fold-constants", why="ops on constants (frozen inputs, shapes) need no kernel, "
                         "and expansion must see which inputs are constant"),
        "expand": PassSpec("expand-functions", why=f"ops with no {target} kernel become their ONNX function bodies"),
        "unroll": PassSpec("unroll-loops", why="Scan and constant-count Loop become straight-line code"),
        "select": PassSpec("if-to-select", why="an If on a run-time condition computes both branches and selects"),
        "flex": PassSpec("decompose-flex-attention", why="FlexAttention (no ONNX function body) as MatMul/Softmax"),
        "merge": PassSpec("eliminate-common-subexpressions", why="duplicates merge before fusion: fused nodes "
                          "record their original node names, so duplicate fused nodes no longer merge"),
        "masks": PassSpec("mask-dynamic-tails", why="with a dynamic dim padded to its bound, a softmax, reduction "
                          "or contraction over it reads its padding through a mask (before fusion; no-op otherwise)"),
        "batch_norm": PassSpec("fold-batch-norm", why="BatchNormalization and constant scale/shift fold into the "
                               "producing Conv/Gemm/MatMul weights; the rest become Mul+Add for fusion"),
        "epilogues": PassSpec("fuse-epilogues", why="bias, activation and residual Add after a Conv/Gemm/MatMul are "
                              f"applied in its {kernel} before the store (before fuse-elementwise takes them)"),
        "fuse": PassSpec("fuse-elementwise", why="chains of elementwise ops become one loop over the elements"),
    }
