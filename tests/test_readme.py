"""The README's set-up commands and adapter example are real."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_setup_commands_ci_runs():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    ci = (ROOT / ".ci/run").read_text()
    for cmd in block:
        assert cmd in ci, f".ci/run must run the README command: {cmd}"


def test_readme_adapter_example_runs(tiny_dataset, tmp_path):
    code = re.search(r"```python\n# my_models.py\n(.*?)```", README, re.S).group(1)
    (tmp_path / "my_models.py").write_text(code)
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "asva_bench.cli", "run", "--model", "my_models:LoudnessFlash",
         "--dataset", "avsync15", "--root", str(tiny_dataset), "--profile", "mini",
         "--model-arg", "strength=0.3", "--out", str(out), "--json", "--no-score"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads(res.stdout)["run"]
    assert rec["model"]["config"] == {"strength": 0.3}
    assert rec["clips"]["generated"] == 12
