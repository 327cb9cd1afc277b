"""Precision: what a compile at reduced precision keeps in float32, and the report that says so."""
