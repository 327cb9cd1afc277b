"""The PWL designer: every activation's integer table, run by the executor as a PWL layer, stays
within its error budget against numpy float64; tables respect the ISA's limits."""

import numpy as np
import pytest

from compiler.codegen.gna.layers import Diagonal
from compiler.codegen.gna.pwl import MAX_SEGMENTS, design, function
from tests.gna.harness import run_layer

# (op, attributes, input range, input scale, output scale)
CASES = [
    ("Sigmoid", {}, (-4.0, 4.0), 2.0 ** 16, 2048.0),
    ("Tanh", {}, (-3.0, 3.0), 2.0 ** 20, 2048.0),
    ("Relu", {}, (-5.0, 7.0), 3000.0, 2048.0),
    ("LeakyRelu", {"alpha": 0.2}, (-5.0, 7.0), 2.0 ** 18, 2048.0),
    ("Clip", {"min": -1.0, "max": 2.5}, (-4.0, 4.0), 2.0 ** 18, 2048.0),
    ("Abs", {}, (-6.0, 2.0), 2.0 ** 12, 2048.0),
    ("Identity", {}, (-3.0, 3.0), 2.0 ** 24, 4096.0),
    ("Exp", {}, (-4.0, 2.0), 2.0 ** 16, 2048.0),
    ("Log", {}, (0.05, 6.0), 2.0 ** 16, 2048.0),
    ("Softsign", {}, (-8.0, 8.0), 2.0 ** 16, 2048.0),
    ("Pow", {"exponent": 3.0}, (-2.0, 2.0), 2.0 ** 16, 2048.0),
    ("Pow", {"exponent": 0.5}, (0.0, 9.0), 2.0 ** 16, 4096.0),
]


def _executed(table, x_int: np.ndarray) -> np.ndarray:
    """The table applied by the executor to int32 inputs: a DIAGONAL layer with zero weights whose bias
    holds the inputs, then the PWL (integer semantics of the stream)."""
    elements = -(-len(x_int) // 8) * 8
    x_int = np.pad(x_int, (0, elements - len(x_int)))
    layer = lambda s, t: Diagonal("act", s, t, np.zeros(elements, np.int16), x_int.astype(np.int32), pwl=table)  # noqa: E731
    return run_layer(layer, np.zeros((1, elements)), (1, elements))[0][:len(x_int)]


@pytest.mark.parametrize("op,attrs,bounds,in_scale,out_scale", CASES, ids=[c[0] + str(c[1]) for c in CASES])
def test_table_meets_the_budget_through_the_executor(op, attrs, bounds, in_scale, out_scale):
    fn = function(op, **attrs)
    result = design(fn, in_scale, out_scale, *bounds, budget=0.01)
    low, high = result.range
    assert 1 <= result.segments <= MAX_SEGMENTS
    xs = np.rint(np.linspace(max(low, bounds[0]) * in_scale, high * in_scale, 4000))
    got = _executed(result.pwl, xs).astype(np.float64) / out_scale
    reference = fn.f(xs / in_scale)
    error = np.max(np.abs(got - reference)) / np.max(np.abs(fn.f(np.linspace(low, high, 4097))))
    assert error <= 0.01
    # The reported error is measured on a grid of inputs: right to within one output step.
    assert error <= result.error + 1.0 / out_scale


def test_sigmoid_and_tanh_use_the_gna_defaults():
    for op, domain in (("Sigmoid", (-10.0, 10.0)), ("Tanh", (-5.0, 5.0))):
        result = design(function(op), 2.0 ** 16, 2048.0, -1.0, 1.0)
        assert result.range == domain and result.segments >= 65
        # Flat beyond the designed range: sigmoid(+-40) and tanh(+-40) round to their limits.
        ends = _executed(result.pwl, np.array([-40 * 2 ** 16, 40 * 2 ** 16]))[:2]
        assert ends.tolist() == ([0, 2048] if op == "Sigmoid" else [-2048, 2048])


def test_a_tighter_budget_buys_accuracy_with_segments():
    fn = function("Softsign")
    loose, tight = (design(fn, 2.0 ** 16, 2048.0, -8.0, 8.0, budget=b) for b in (0.02, 0.002))
    assert tight.error <= 0.002 < loose.budget and tight.segments > loose.segments


def test_sign_is_exact_at_zero_and_either_side():
    result = design(function("Sign"), 1000.0, 2048.0, -3.0, 3.0)
    assert _executed(result.pwl, np.array([-2 ** 31, -1, 0, 1, 2 ** 31 - 1]))[:5].tolist() == [-2048, -2048, 0, 2048, 2048]


def test_unknown_activation_names_the_known_ones():
    with pytest.raises(ValueError, match="Sigmoid"):
        function("Softmax")
