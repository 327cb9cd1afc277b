"""One artifact holding a model compiled for several input shapes, dispatched by shape at run time.

`compile(model, target, specialize=[{"input_ids": [1, 64]}, {"input_ids": [1, 128]}])` (CLI:
`--specialize input_ids=1,64 --specialize input_ids=1,128`) compiles the model once per listed
shape set, each part with static shapes and so the kernels' specialised fast paths, and joins the
parts into one artifact of target "dispatch". Its signature is the model's declared one, where each
dim the parts fill in differently is symbolic with its bounds (the smallest and largest size
compiled); the runtime (runtime/dispatch.py) runs the part compiled for the shapes it is given.
A shape set may give a dynamic batch ("1..8", compiler/dynamic_batch.py): that part runs every
batch size within its bounds, so `[{"ids": ["1..8", 64]}, {"ids": ["1..8", 128]}]` covers any
batch at two sequence lengths. It may give a dynamic extent too (compiler/dynamic_extent.py): the
runtime runs a part compiled for exactly a call's shapes when there is one, so
`[{"ids": [1, 128]}, {"ids": ["1..8", "1..512"]}]` runs the specialised part at [1, 128] and the
generic one at any other shape within the bounds.

Part k's files are stored as `p<k>.<name>` beside its manifest `p<k>.manifest.json`.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from compiler.artifact import Artifact, compiler_version


class DispatchError(ValueError):
    """The listed specialisations do not fit together (or the model)."""


def _part_sizes(entry: dict, parts: list[Artifact], role: str) -> list[tuple] | None:
    """Per dim of one input/output, its (smallest, largest) size in each part (a part with a dynamic batch,
    compiler/dynamic_batch.py, runs a range); None when a part's shape is unknown."""
    shapes = []
    for part in parts:
        match = next(e for e in part.manifest[role] if e["name"] == entry["name"])
        shape = match["type"].get("shape")
        bounds = match.get("bounds") or [None] * len(shape or ())
        shapes.append(None if shape is None else [tuple(b) if b else (d, d) for d, b in zip(shape, bounds)])
    return None if any(shape is None for shape in shapes) else list(zip(*shapes))


def _symbolic(entry: dict, declared_entry: dict | None, sizes: list[tuple] | None, names: dict[tuple, str]) -> dict:
    """The part's entry with each dim whose size differs across parts symbolic, with its bounds. Its
    name is the model's (`declared_entry`), else that of an input dim taking the same sizes in every
    part (`names`, filled from the inputs first), else a new one."""
    if sizes is None or "tensor" not in entry["type"]:
        return entry
    declared = ((declared_entry or {}).get("type") or {}).get("shape") or []
    declared = declared if len(declared) == len(sizes) else [None] * len(sizes)
    shape, bounds = [], []
    for axis, (dim, per_part) in enumerate(zip(declared, sizes)):
        if len(set(per_part)) == 1 and per_part[0][0] == per_part[0][1]:
            shape.append(per_part[0][0])
            bounds.append(None)
            continue
        name = dim if isinstance(dim, str) else names.get(per_part, f"{entry['name']}_dim{axis}")
        names.setdefault(per_part, name)
        shape.append(name)
        highs = [high for _, high in per_part]
        bounds.append([min(low for low, _ in per_part), None if None in highs else max(highs)])
    return {**entry, "type": {**entry["type"], "shape": shape}, "bounds": bounds}


def dispatch_artifact(specializations: Sequence[Mapping[str, Sequence[int]]],
                      compile_part: Callable[[Mapping[str, Sequence[int]]], Artifact], declared: dict) -> Artifact:
    """Compile one part per shape set with `compile_part(shapes)` and join them. `declared` holds the
    model's own `inputs`/`outputs` manifest entries (symbolic dims as the model names them)."""
    if len(specializations) < 1:
        raise DispatchError("specialize= needs at least one shape set")
    keys = [tuple(sorted((name, tuple(str(d) for d in dims)) for name, dims in s.items())) for s in specializations]
    if len(set(keys)) != len(keys):
        raise DispatchError(f"specialize= lists the same shapes twice: {list(specializations)}")
    parts = [compile_part(shapes) for shapes in specializations]
    first = parts[0].manifest
    for index, part in enumerate(parts[1:], 1):
        if [e["name"] for e in part.manifest["inputs"]] != [e["name"] for e in first["inputs"]]:
            raise DispatchError(f"specialisation {index} has inputs {[e['name'] for e in part.manifest['inputs']]}, "
                                f"the first {[e['name'] for e in first['inputs']]}; give every part the same inputs")
    by_name = {e["name"]: e for e in declared["inputs"] + declared["outputs"]}
    manifest = {"target": "dispatch", "compiler_version": compiler_version(), "parts": []}
    names: dict[tuple, str] = {}
    for role in ("inputs", "outputs"):
        manifest[role] = [_symbolic(e, by_name.get(e["name"]), _part_sizes(e, parts, role), names)
                          for e in first[role]]
    files = {}
    for index, part in enumerate(parts):
        prefix = f"p{index}."
        tensors = [e for e in part.manifest["inputs"] if "tensor" in e["type"]]
        manifest["parts"].append({"prefix": prefix, "target": part.manifest["target"],
                                  "input_shapes": {e["name"]: e["type"]["shape"] for e in tensors},
                                  "input_bounds": {e["name"]: e["bounds"] for e in tensors if e.get("bounds")}})
        files[prefix + "manifest.json"] = part.manifest_bytes()
        files.update({prefix + name: data for name, data in part.files.items()})
    return Artifact(manifest, files)
