"""OpenCL C code generation for the gpu target.

dialect.py spells types, literals and conversions; expressions.py renders the elementwise body
of every IR op as one C expression; launch.py picks work-group sizes from device limits;
kernels/ holds one jinja2 template (*.cl.j2) and one planning module per op family;
program.py joins a graph's kernels into one program with its launch plan.
"""
