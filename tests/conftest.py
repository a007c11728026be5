"""Hypothesis profiles for the whole suite; nothing else belongs here.

"ci" is loaded by default and keeps `make test` fast. "long" is for a deliberate fuzzing run (an hour or more;
--timeout=0 lifts pytest-timeout's 300 s per test, which a 5000-example test outlasts):

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q --timeout=0 tests/depin/test_codec_properties.py \
        tests/coordinator/test_handlers_fuzz.py

Tests that pin their own `max_examples` in `@settings` keep it under either profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Fuzz tests drive one in-process coordinator across all examples of a test: the fixture is meant to be shared.
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]

settings.register_profile("ci", max_examples=80, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=_SUPPRESS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# Workers started by tests compute whenever there is work, and serve no owner's page, unless a test says otherwise:
# on a shared test machine the idle policy would see the other test workers as the machine being in use.
os.environ.setdefault("DEPIN_WORKER_ALWAYS", "1")
os.environ.setdefault("DEPIN_WORKER_PAGE_PORT", "off")
