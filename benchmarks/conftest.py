"""Benchmarks in the project's test command run once, untimed (--benchmark-disable), unless a
benchmark option asks for timing (--benchmark-only, --benchmark-autosave, --benchmark-compare, ...)."""
import pytest

TIMING_OPTIONS = ("benchmark_only", "benchmark_autosave", "benchmark_save", "benchmark_compare", "benchmark_enable")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if not any(config.getoption(name, default=None) for name in TIMING_OPTIONS):
        config.option.benchmark_disable = True
