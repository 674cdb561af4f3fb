"""A Static adapter that sleeps per batch, so a test can kill a run mid-way."""

import time

from asva_bench.baselines.static import Static


class SlowStatic(Static):
    name = "static"  # same outputs as Static, hence the same clip files
    batch_size = 1

    def generate(self, batch):
        time.sleep(0.3)
        return super().generate(batch)
