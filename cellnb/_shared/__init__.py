"""Helpers every layer of cellnb uses (private): input validation, progress bars,
atomic files, tiling, normalisation, torch devices, safe YAML, provenance.

This is the bottom layer: modules here import nothing else from cellnb.
"""
