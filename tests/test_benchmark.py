"""scripts/benchmark.py runs and prints its table (a smoke test: the numbers
themselves are the benchmark's business, not the tests')."""

import subprocess
import sys

from tests.test_pretrain import REPO_ROOT, data_dir  # noqa: F401  (fixture)


def test_benchmark_prints_a_table(data_dir, tmp_path):  # noqa: F811
    output = tmp_path / "benchmark.md"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), f"--data_dir={data_dir}",
         "--backbones=resnet20", "--predictors=directcopy,linear", "--inputs=synthetic,real",
         "--xla=on", "--batch_size=16", "--warmup_steps=1", "--steps=2", f"--output={output}"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = output.read_text()
    assert "Hardware: CPU only" in table and "Batch 16, 2 timed steps" in table
    rows = [line for line in table.splitlines() if line.startswith("| resnet20")]
    assert len(rows) == 4
    directcopy_real = next(r for r in rows if "| directcopy | real |" in r)
    cells = [c.strip() for c in directcopy_real.strip("|").split("|")]
    assert float(cells[4]) > 0  # pairs/s
    assert cells[6].endswith("%") and cells[7].endswith("%")  # real/synthetic, update cost
    linear = next(r for r in rows if "| linear | synthetic |" in r)
    assert [c.strip() for c in linear.strip("|").split("|")][7] == ""  # no update to time
