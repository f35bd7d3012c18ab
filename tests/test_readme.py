"""The README's test command is the one CI runs."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_command = next(b for b in blocks if "pytest" in b).strip()
    ci = [line.strip() for line in open(os.path.join(ROOT, ".ci", "run")) if line.strip()]
    assert ci[-1] == test_command
    install = next(b for b in blocks if "pip install" in b)
    assert "torch==2.13.0" in install and "--no-build-isolation" in install
    assert install.rstrip().endswith("suptickets train")


def test_readme_holds_the_study_tables_of_the_committed_records():
    """``bench_study.py --report`` on ``results/fashion-mnist`` prints the README's tables."""
    import subprocess
    import sys
    results = os.path.join(ROOT, "results", "fashion-mnist")
    if not os.path.isdir(results) or not any(f.endswith(".json") for f in os.listdir(results)):
        raise AssertionError("no study records are committed under results/fashion-mnist")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_study.py"), "--report"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    readme = open(os.path.join(ROOT, "README.md")).read()
    table_lines = [line for line in out.splitlines() if line.startswith("|")]
    assert table_lines
    missing = [line for line in table_lines if line not in readme]
    assert not missing, f"{len(missing)} report lines are not in the README, e.g. {missing[0]}"
