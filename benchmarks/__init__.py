"""Benchmarks: every model on the same split with the one evaluator.

``python -m benchmarks.run`` fits each registered model (:mod:`benchmarks.registry`), evaluates
it with :func:`hybridrec.evaluation.evaluate`, and writes ``results.json``, ``results.md`` and plots
(:mod:`benchmarks.report`) under ``--out`` (default: ``benchmarks/out/``).
"""
