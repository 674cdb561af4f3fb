"""`asva-bench curate`: the paper's dataset curation pipeline (Sec. 3.1), over a folder of raw videos.

Modules, in pipeline order (docs/curation.md explains each step):

* :mod:`.config`    - settings and thresholds, one TOML file per profile (``configs/``);
* :mod:`.clips`     - input listing, decoding once, PySceneDetect scene cuts, the 3 s / 0.5 s clip grid;
* :mod:`.signals`   - the six per-clip signals from the harness's backbones;
* :mod:`.decisions` - filters, review overrides, merging into examples, the class rule, the split;
* :mod:`.manifest`  - shard files, the manifest of every decision, the dataset folder;
* :mod:`.review`    - the per-class review pages and the marks they export;
* :mod:`.evaluation` - scoring a curation against synth-wild's labelled defects;
* :mod:`.pipeline`  - sharding (torchrun, ``--shard i/n``), merge, apply-review;
* :mod:`.cli`       - the ``curate`` command.
"""
