"""Kernel benchmarks (pytest-benchmark): one summary table, then the declared speed targets.

Every benchmark sets ``benchmark.group`` and ``benchmark.extra_info["impl"]``; modules declare
targets with ``targets.target``. A benchmark that times two loops interleaved in one run reports
their medians with ``targets.measured``; they join the table and the targets like any row. ``--check-targets`` (used by ``make bench``) fails the run when
a target is missed, and when a declared target could not be checked because its group or one of
its two rows did not run; otherwise misses are only reported.
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/reference.py

from targets import MEASURED, TARGETS  # noqa: E402

torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption("--check-targets", action="store_true", help="fail when a speed target is missed or not run")


def _medians(config):
    session = getattr(config, "_benchmarksession", None)
    medians = {}
    for bench in getattr(session, "benchmarks", []) or []:
        if bench.stats is not None:
            medians[(bench.group, bench.extra_info.get("impl"))] = bench.stats.median
    return {**medians, **MEASURED}


def _verdicts(medians):
    """(status, line) per declared target: PASS, MISS, or NOT RUN when a row is absent."""
    out = []
    for t in TARGETS:
        a, b = medians.get((t.group, t.impl)), medians.get((t.group, t.baseline))
        if a is None or b is None:
            absent = " and ".join(name for name, m in ((t.impl, a), (t.baseline, b)) if m is None)
            out.append(("NOT RUN", f"{t.group}: {absent} not timed ({t.impl} / {t.baseline} target <= {t.max_ratio})"))
            continue
        ratio = a / b
        status = "PASS" if ratio <= t.max_ratio else "MISS"
        out.append((status, f"{t.group}: {t.impl} / {t.baseline} = {ratio:.3f} (target <= {t.max_ratio}; {t.why})"))
    return out


# Runs before the terminal summary (the terminal reporter prints it after every other
# pytest_sessionfinish), so the exit status is settled here and the summary only prints.
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    config._dsampling_verdicts = _verdicts(_medians(config))
    failed = [line for status, line in config._dsampling_verdicts if status != "PASS"]
    passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if config.getoption("--check-targets") and failed and session.exitstatus in passing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables, so the summary is what stays on screen
def pytest_terminal_summary(terminalreporter, config):
    medians = _medians(config)
    write = terminalreporter.write_line
    if medians:
        write("")
        write("Kernel benchmark summary (median time per call)")
        groups = sorted({g for g, _ in medians},
                        key=lambda g: (g.split(" N=")[0], int(g.split("N=")[1]) if "N=" in g else 0))
        for group in groups:
            row = {impl: t for (g, impl), t in medians.items() if g == group}
            cells = "  ".join(f"{impl} {t * 1e3:9.3f} ms" for impl, t in sorted(row.items()))
            write(f"  {group:<34} {cells}")
        for group in [g for g in groups if g.startswith("overhead")]:
            row = {impl: t for (g, impl), t in medians.items() if g == group}
            if "uniform" in row:
                write("")
                write(f"Selection machinery per epoch, {group} (uniform RandomSampler epoch {row['uniform'] * 1e3:.1f} ms)")
                for impl, t in sorted(row.items(), key=lambda kv: kv[1]):
                    write(f"  {impl:<20} overhead vs uniform = {t / row['uniform']:.2f}x")
    verdicts = getattr(config, "_dsampling_verdicts", [])
    if verdicts:
        write("")
        checked = config.getoption("--check-targets")
        write("Speed targets" + (" (--check-targets: anything but PASS fails the run)" if checked else ""))
        for status, line in verdicts:
            write(f"  [{status}] {line}")
