"""Shared by every pytest suite under tests/: the report hook of the harness
(tests/harness/report.py). tests/pytest.ini puts tests/ on sys.path, so the
suites import `harness.*`; each suite's own conftest.py holds its fixtures."""

from harness.report import pytest_runtest_makereport  # noqa: F401  (a pytest hook)
