"""Compile time with the model cache: a first compile (a miss) and a second one (a hit, which loads).

    python bench/compile_cache.py [--model light_resnet50] [--target cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compiler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="light_resnet50")
    parser.add_argument("--target", default="cpu")
    args = parser.parse_args()
    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"{args.model}.onnx"
    with tempfile.TemporaryDirectory() as cache_dir:
        for attempt in ("first (miss)", "second (hit)"):
            start = time.perf_counter()
            compiler.compile(str(path), target=args.target, cache_dir=cache_dir)
            print(f"{args.model} {args.target} compile, {attempt}: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
