"""weights.bin with float32 weights stored as float16, and the table a loader widens it by.

The cpu kernels read float32 weights at the offsets of the memory plan's weights blob. Under
precision fp16 the artifact stores the chosen weights as float16 in a smaller blob instead; the
manifest's "weights_storage" lists every weight with its stored dtype and offsets, and the loader
(runtime/weights.py, or kiln_widen_weights in model.h for C) rebuilds the blob once at load.
"""

from __future__ import annotations

import numpy as np

from compiler.codegen.memory_plan import MemoryPlan
from compiler.ir.graph import Graph, Value
from compiler.ir.serialize import WeightsWriter
from compiler.precision.fp16_check import Fp16Plan, plan_fp16
from compiler.precision.options import precision_of


def compress_weights(graph: Graph, plan: MemoryPlan, half: set[str]) -> tuple[bytes, dict]:
    """(stored blob, manifest "weights_storage"): the constants named in `half` as float16, the rest as laid out."""
    stored = WeightsWriter()
    entries = []
    constants = [node for node in graph.nodes() if node.is_constant]
    for node in sorted(constants, key=lambda n: plan.locations[Value(n.name, 0)].offset):
        array = np.asarray(node.attrs["value"])
        kept = array.astype(np.float16) if node.name in half else array
        entries.append({"name": node.name, "dtype": str(kept.dtype), "bytes": array.nbytes,
                        "offset": plan.locations[Value(node.name, 0)].offset, "stored_offset": stored.add(kept)["offset"]})
    return bytes(stored.blob), {"bytes": len(plan.weights), "stored_bytes": len(stored.blob), "weights": entries}


def cpu_weights(graph: Graph, plan: MemoryPlan, options: dict) -> tuple[bytes, dict | None, Fp16Plan | None]:
    """(weights.bin, manifest "weights_storage", fp16 plan) for the cpu target; the last two are None but
    under precision fp16, where the weights that float16 holds (fp16_check.weight_problem) are stored
    as float16. Kernels compute in float32, so activation ranges keep no weight in float32."""
    if precision_of(options) != "fp16":
        return plan.weights, None, None
    fp16 = plan_fp16(graph, options, keep_weights_of_kept_nodes=False)
    weights, storage = compress_weights(graph, plan, fp16.half_weights)
    return weights, storage, fp16


def _c_segments(storage: dict | None, weights_bytes: int) -> list[tuple[int, int, int, int]]:
    """(stored offset, offset, bytes in the kernels' blob, 1 when stored as float16) per weight."""
    if storage is None:
        return [(0, 0, weights_bytes, 0)]
    return [(e["stored_offset"], e["offset"], e["bytes"], int(e["dtype"] == "float16")) for e in storage["weights"]]


def c_widen_lines(storage: dict | None, weights_bytes: int) -> list[str]:
    """model.h's kiln_widen_weights: C that rebuilds the blob kiln_run reads from weights.bin."""
    stored_bytes = weights_bytes if storage is None else storage["stored_bytes"]
    rows = ", ".join("{%d, %d, %d, %d}" % segment for segment in _c_segments(storage, weights_bytes)) or "{0, 0, 0, 0}"
    return [
        "/* weights.bin holds KILN_STORED_WEIGHTS_BYTES; kiln_widen_weights(stored, weights) writes the",
        " * KILN_WEIGHTS_BYTES kiln_run reads (float16-stored weights widened to float32, the rest copied). */",
        f"#define KILN_STORED_WEIGHTS_BYTES {stored_bytes}",
        "/* per weight: stored offset, offset, bytes widened, 1 when stored as float16 */",
        f"static const int64_t KILN_WEIGHT_SEGMENTS[][4] = {{{rows}}};",
        "static inline uint32_t kiln_half_to_float_bits(uint16_t h) {",
        "    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;",
        "    if (exponent == 0x1fu) return sign | 0x7f800000u | (mantissa << 13); /* inf, nan */",
        "    if (exponent) return sign | ((exponent + 112u) << 23) | (mantissa << 13);",
        "    if (!mantissa) return sign;",
        "    for (exponent = 113u; !(mantissa & 0x400u); exponent--) mantissa <<= 1; /* subnormal: normalize */",
        "    return sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);",
        "}",
        "static inline void kiln_widen_weights(const void *stored, void *weights) {",
        "    const uint8_t *from = (const uint8_t *)stored;",
        "    uint8_t *to = (uint8_t *)weights;",
        "    for (size_t s = 0; s < sizeof KILN_WEIGHT_SEGMENTS / sizeof KILN_WEIGHT_SEGMENTS[0]; s++) {",
        "        const int64_t *segment = KILN_WEIGHT_SEGMENTS[s];",
        "        if (!segment[3]) {",
        "            memcpy(to + segment[1], from + segment[0], (size_t)segment[2]);",
        "            continue;",
        "        }",
        "        for (int64_t i = 0; i < segment[2] / 4; i++) {",
        "            uint16_t half;",
        "            uint32_t bits;",
        "            memcpy(&half, from + segment[0] + 2 * i, 2);",
        "            bits = kiln_half_to_float_bits(half);",
        "            memcpy(to + segment[1] + 4 * i, &bits, 4);",
        "        }",
        "    }",
        "}",
        "",
    ]
