"""Shared test settings: a headless matplotlib and quick mode everywhere.

Notebook kernels started by nbval inherit this environment, so they run in quick mode too.
"""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["SEGAN_QUICK"] = "1"
