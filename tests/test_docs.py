"""The code examples of the README and of the documentation site run as written: every ```python
block of a page, in order, in one namespace per page (a block that is not meant to run is fenced as
something else)."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)])
PAGES = [p for p in PAGES if "_build" not in p]


def python_blocks(path: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", open(path).read(), re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: os.path.relpath(p, ROOT))
def test_page_examples_run(page, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(page)):
        exec(compile(block, f"{os.path.relpath(page, ROOT)}[python block {i + 1}]", "exec"), namespace)


def test_every_page_with_examples_is_found():
    assert any(p.endswith("getting-started.md") for p in PAGES if python_blocks(p))
    assert sum(len(python_blocks(p)) for p in PAGES) >= 4
