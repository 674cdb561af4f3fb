"""heap.keep_freed_memory: freed activations are reused instead of page-faulted in again."""

import json
import platform
import subprocess
import sys
import textwrap


PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from asva_bench.heap import keep_freed_memory
    on = keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def batch():                             # a forward's activations: 8 blocks of 12 MiB, then freed
        blocks = [np.ones(3 << 19) for _ in range(8)]
        del blocks
    for _ in range(3):                       # settle glibc's own threshold adjustments
        batch()
    before = faults()
    for _ in range(10):
        batch()
    print(json.dumps({"on": on, "again": keep_freed_memory(), "faults": faults() - before}))
""")


def probe(env_extra):
    import os
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_tuned_heap_reuses_freed_blocks_and_the_flag_turns_it_off():
    tuned = probe({"ASVA_BENCH_NO_HEAP_TUNING": ""})
    plain = probe({"ASVA_BENCH_NO_HEAP_TUNING": "1"})
    assert not plain["on"] and tuned["again"] == tuned["on"]
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert tuned["on"] == glibc         # elsewhere (macOS, musl) it reports that it did nothing
    if not glibc:
        return
    # untuned, glibc returns part of the freed heap top to the kernel and each round faults it in
    # again (about 4,000 pages a round measured here); tuned, the rounds reuse the same pages
    assert plain["faults"] > 20_000
    assert tuned["faults"] < 1_000
