"""Runs "host" artifacts (compiler/targets/host.py): the string ops, in numpy and the standard library.

Native code has no strings, so a cpu artifact hands its string nodes to a host part (a hetero
artifact, compiler/partition.py). The ops follow the ONNX definitions as onnx.reference computes
them: StringNormalizer (accents stripped, case changed, stopwords removed, empty results dropped),
StringConcat, StringSplit, RegexFullMatch, LabelEncoder, Equal, Identity and Cast to or from strings. String tensors are
numpy object arrays of str.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np


def _strings(x) -> np.ndarray:
    return np.asarray(x, dtype=object)


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _without(text: str, stops: set) -> str:
    return " ".join(word for word in text.split(" ") if word not in stops)


def string_normalizer(x, case_change_action="NONE", is_case_sensitive=0, stopwords=(), locale=""):
    change = {"LOWER": str.lower, "UPPER": str.upper, "NONE": lambda s: s}[case_change_action]
    raw_stops = set(stopwords)
    stops = {change(word) for word in stopwords}

    def normalize(text) -> str:
        text = "" if not isinstance(text, str) else _strip_accents(text)
        if is_case_sensitive and raw_stops:
            text = _without(text, raw_stops)
        text = change(text)
        return text if is_case_sensitive or not stops else _without(text, stops)

    x = _strings(x)
    result = np.vectorize(normalize, otypes=[object])(x) if x.size else x.copy()
    if x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1):  # empty strings leave a vector or a single row
        kept = [text for text in result.reshape(-1) if text] or [""]
        result = np.array(kept, dtype=object).reshape((-1,) if x.ndim == 1 else (1, -1))
    return [result]


def string_concat(x, y):
    return [np.char.add(_strings(x).astype(str), _strings(y).astype(str)).astype(object)]


def string_split(x, delimiter=None, maxsplit=None):
    x = _strings(x)
    pieces = [str(text).split(delimiter or None, -1 if maxsplit is None else maxsplit) for text in x.reshape(-1)]
    width = max((len(p) for p in pieces), default=0)
    padded = np.array([p + [""] * (width - len(p)) for p in pieces], dtype=object).reshape(*x.shape, width)
    return [padded, np.array([len(p) for p in pieces], dtype=np.int64).reshape(x.shape)]


def regex_full_match(x, pattern):
    regex = re.compile(pattern)
    return [np.vectorize(lambda text: regex.fullmatch(text) is not None, otypes=[np.bool_])(_strings(x))]


# ONNX TensorProto element types a string Cast converts to or from.
_ONNX_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
               8: object, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def cast(x, to, saturate=1, round_mode="up"):
    """Cast to or from strings: numbers print as numpy prints them; strings parse as numbers."""
    x = np.asarray(x)
    if _ONNX_TYPES[to] is object:
        return [x.astype(str).astype(object)]
    return [x.astype(str).astype(_ONNX_TYPES[to])]


_VALUE_TYPES = {"floats": np.float32, "int64s": np.int64, "strings": object}


def label_encoder(x, **attrs):
    keys = next(attrs[f"keys_{k}"] for k in ("floats", "int64s", "strings", "tensor") if f"keys_{k}" in attrs)
    kind = next(k for k in ("floats", "int64s", "strings", "tensor") if f"values_{k}" in attrs)
    values = attrs[f"values_{kind}"]
    if kind == "tensor":
        dtype, default = values.dtype, attrs["default_tensor"].reshape(-1)[0]
    else:
        dtype = _VALUE_TYPES[kind]
        default = attrs.get(f"default_{kind[:-1]}", {"floats": -0.0, "int64s": -1, "strings": "_Unused"}[kind])
    table = dict(zip(np.asarray(keys).tolist(), np.asarray(values).tolist()))
    return [np.vectorize(lambda key: table.get(key, default), otypes=[dtype])(np.asarray(x))]


OPS = {
    "StringNormalizer": string_normalizer,
    "StringConcat": string_concat,
    "StringSplit": string_split,
    "RegexFullMatch": regex_full_match,
    "ai.onnx.ml::LabelEncoder": label_encoder,
    "Equal": lambda a, b: [np.asarray(np.asarray(a) == np.asarray(b), dtype=np.bool_)],
    "Identity": lambda x: [np.array(x, copy=True)],
    "Cast": cast,
}


def _attribute(value):
    """An attribute from the manifest's JSON: arrays are {"array": values, "dtype": name}."""
    if isinstance(value, dict) and "array" in value:
        return np.array(value["array"], dtype=object if value["dtype"] == "string" else value["dtype"])
    return value


class HostExecutor:
    def __init__(self, files, **options):
        host = files.manifest["host"]
        self._inputs = [entry["name"] for entry in files.manifest["inputs"]]
        self._outputs = host["outputs"]
        self._constants = {name: _attribute(value) for name, value in host["constants"].items()}
        self._nodes = [(OPS[node["op"]], node["inputs"], node["outputs"],
                        {key: _attribute(value) for key, value in node["attrs"].items()}) for node in host["nodes"]]

    def run(self, inputs: list) -> list:
        values = {**self._constants, **dict(zip(self._inputs, inputs))}
        for op, reads, writes, attrs in self._nodes:
            values.update(zip(writes, op(*[values[name] for name in reads], **attrs)))
        return [values[name] for name in self._outputs]
