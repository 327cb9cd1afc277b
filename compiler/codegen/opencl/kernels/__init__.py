"""Kernel families of the gpu target: each module plans its ops and renders the template of the same name."""
