"""The README's commands and figures: CI runs its test command, its install command ends with the main
job, every study figure it shows is in the report of the committed records, the documentation's results
page holds every table of both reports, and the main job prints the table the README shows."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
    return open(os.path.join(ROOT, "README.md")).read()


def report(*flags: str) -> str:
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_study.py"), "--report", *flags],
                          capture_output=True, text=True, check=True, timeout=300).stdout


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", readme(), re.S)
    test_command = next(b for b in blocks if "pytest" in b).strip()
    ci = [line.strip() for line in open(os.path.join(ROOT, ".ci", "run")) if line.strip()]
    assert ci[-1] == test_command
    install = next(b for b in blocks if "pip install" in b)
    assert "torch==2.13.0" in install and "--no-build-isolation" in install
    assert install.rstrip().endswith("suptickets train")


@pytest.mark.parametrize("flags", [(), ("--plan", "long")], ids=["short", "long"])
def test_readme_study_figures_come_from_the_report(flags):
    """Every figure of a README row whose command is a study report is in that report's output."""
    text = report(*flags).replace("−", "-")
    command = "bench_study.py " + " ".join((*flags, "--report")) + "`"
    rows = [line for line in readme().splitlines() if line.startswith("|") and command in line]
    assert rows
    for row in rows:
        result = row.split("|")[2].replace("−", "-")
        figures = re.findall(r"[+-]?\d+\.\d+(?: ± \d+\.\d+)?|\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]", result)
        assert figures, row
        for figure in figures:
            assert figure in text or figure.lstrip("+") in text, f"{figure!r} of {row!r} is not in the report"


def test_results_page_holds_every_table_of_both_reports():
    page = open(os.path.join(ROOT, "docs", "results.md")).read()
    for flags in ((), ("--plan", "long")):
        lines = [line for line in report(*flags).splitlines() if line.startswith("|")]
        assert lines
        missing = [line for line in lines if line not in page]
        assert not missing, f"{len(missing)} report lines ({' '.join(flags) or 'short'}) are not in docs/results.md, " \
                            f"e.g. {missing[0]}"


def _result_table(text: str) -> dict:
    return dict(re.findall(r"^(test accuracy|ECE|NLL|sparsity|FLOPs train|FLOPs test|training time)\s+(.*)$",
                           text, re.M))


@pytest.mark.slow
def test_the_main_job_prints_the_readme_figures(tmp_path):
    """The main job, as the README's install command runs it on a new machine (a fresh cost-model
    calibration): sparsity and FLOPs exactly; accuracy to within two of the 450 test images (the
    instruction set, the thread count and the cost model's paths change the last bits of the
    arithmetic); the time within a factor of 2 (a drift check of the README, not a speed test)."""
    want = _result_table(re.search(r"```text\n(network.*?)```", readme(), re.S).group(1))
    env = {**os.environ, "SUPTICKETS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "suptickets", "train", "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "suptickets train: note: this run has 5040 steps, fewer than the" in proc.stderr  # as the README says
    got = _result_table(proc.stdout)
    for key in ("sparsity", "FLOPs train", "FLOPs test"):
        assert got[key] == want[key], key
    accuracy, want_accuracy = (float(t["test accuracy"].split()[0]) for t in (got, want))
    assert abs(accuracy - want_accuracy) <= 200 / 450 + 1e-9, (accuracy, want_accuracy)
    seconds, want_seconds = (float(t["training time"].split()[0]) for t in (got, want))
    assert want_seconds / 2 <= seconds <= want_seconds * 2, f"the main job took {seconds} s, the README says " \
                                                            f"{want_seconds} s: measure it again"
    assert got["training time"].split(" s ")[1] == want["training time"].split(" s ")[1]  # the steps
