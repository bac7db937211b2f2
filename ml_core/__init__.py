"""Tessera's framework-free model core.

Imports nothing of the platform, Django, Celery or the verticals: the platform calls
:func:`ml_core.pipeline.run_training` and gets a JSON-serialisable result back.
"""
