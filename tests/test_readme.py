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
