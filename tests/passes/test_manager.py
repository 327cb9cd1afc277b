"""PassManager: pipelines by name, options, user passes, disabling and the instruments."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from compiler.ir.graph import Graph, Value
from compiler.ir.verifier import VerificationError
from compiler.passes.manager import (DumpInstrument, PassError, PassManager, PassSpec, TimingInstrument,
                                     VerifyInstrument, get_pass, register_pass, registered_passes)
from tests.passes.conftest import f32

BUILTIN = ["eliminate-common-subexpressions", "eliminate-dead-code", "eliminate-identity", "fold-constants",
           "infer-types"]
CALLS: list[str] = []


@register_pass("test-rename-graph")
def rename_graph(graph: Graph, ctx) -> Graph:
    """A user pass, registered from outside compiler/passes."""
    CALLS.append(graph.name)
    graph.name = "renamed"
    return graph


@register_pass("test-break-graph")
def break_graph(graph: Graph, ctx) -> Graph:
    graph.outputs.append(("ghost", Value("nowhere")))
    return graph


@register_pass("test-return-nothing")
def return_nothing(graph: Graph, ctx):
    return None


def _graph() -> Graph:
    """y = x + (1 + 1), plus an unused constant."""
    graph = Graph()
    x = graph.add_input("x", f32(2))
    one = graph.add_constant(np.ones(2, np.float32), "one")
    graph.add_constant(np.zeros(2, np.float32), "unused")
    two = graph.add_node("Add", [one, one], version=14, name="two")
    graph.add_output("y", Value(graph.add_node("Add", [x, Value(two.name)], version=14, name="y").name))
    return graph


def test_builtin_passes_are_registered():
    assert set(BUILTIN) <= set(registered_passes())


def test_unknown_pass_name_is_an_error():
    with pytest.raises(PassError, match="unknown pass 'no-such-pass'"):
        PassManager([PassSpec("no-such-pass")])


def test_unknown_option_is_an_error():
    with pytest.raises(PassError, match="has no option"):
        PassManager([PassSpec("fold-constants", {"max_elemnts": 4})])
    with pytest.raises(PassError, match="takes no options"):
        get_pass("eliminate-dead-code", aggressive=True)


def test_options_reach_the_pass():
    assert get_pass("fold-constants", max_elements=4).max_elements == 4


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(PassError, match="already registered"):
        register_pass("fold-constants")(lambda graph, ctx: graph)


def test_a_user_pass_runs_where_the_pipeline_puts_it():
    CALLS.clear()
    timing = TimingInstrument()
    pipeline = [PassSpec("infer-types"), PassSpec("test-rename-graph"), PassSpec("fold-constants")]
    graph = PassManager(pipeline, [timing, VerifyInstrument()]).run(_graph())
    assert CALLS == ["main"]
    assert [name for name, _ in timing.timings] == ["infer-types", "test-rename-graph", "fold-constants"]
    assert graph.name == "renamed"
    assert graph.node("two").is_constant


def test_disabled_passes_are_skipped_and_logged(caplog):
    pipeline = [PassSpec("infer-types"), PassSpec("fold-constants"), PassSpec("eliminate-dead-code")]
    with caplog.at_level(logging.INFO, logger="kiln.passes"):
        graph = PassManager(pipeline, disabled=["fold-constants"]).run(_graph())
    assert "pass fold-constants skipped: disabled by the user" in caplog.text
    assert graph.node("two").op_type == "Add"
    assert "unused" not in graph


def test_disabling_an_unknown_pass_is_an_error():
    with pytest.raises(PassError, match="cannot disable unknown pass"):
        PassManager([PassSpec("infer-types")], disabled=["no-such-pass"])


def test_timing_instrument_records_every_pass_in_order():
    timing = TimingInstrument()
    PassManager([PassSpec(name) for name in BUILTIN[::-1]], [timing]).run(_graph())
    assert [name for name, _ in timing.timings] == BUILTIN[::-1]
    assert all(seconds >= 0 for _, seconds in timing.timings)
    assert all(name in timing.summary() for name in BUILTIN)


def test_dump_instrument_writes_text_and_dot(tmp_path):
    dump = DumpInstrument(tmp_path, passes=["fold-constants"], formats=("text", "dot"))
    PassManager([PassSpec("infer-types"), PassSpec("fold-constants")], [dump]).run(_graph())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["02_fold-constants.dot", "02_fold-constants.txt"]
    assert "%two = kiln::Constant(float32[2][2.0, 2.0])" in (tmp_path / "02_fold-constants.txt").read_text()
    assert (tmp_path / "02_fold-constants.dot").read_text().startswith('digraph "main" {')


def test_verify_instrument_names_the_pass_that_broke_the_graph():
    with pytest.raises(VerificationError, match="after pass 'test-break-graph'"):
        PassManager([PassSpec("infer-types"), PassSpec("test-break-graph")], [VerifyInstrument()]).run(_graph())


def test_a_pass_must_return_a_graph():
    with pytest.raises(PassError, match="returned NoneType"):
        PassManager([PassSpec("test-return-nothing")]).run(_graph())
