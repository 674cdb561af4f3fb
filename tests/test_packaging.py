"""Every Python package folder is installed, under the asva_bench namespace only."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
MAPPED = {"baselines": "asva_bench.baselines", "models": "asva_bench.models",
          "leaderboard": "asva_bench.leaderboard", "asva_bench": "asva_bench"}


def test_all_packages_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    assert all(name.startswith("asva_bench") for name in listed)
    found = set()
    for top, pkg in MAPPED.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((pkg, *rel)))
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
