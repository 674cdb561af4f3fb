"""Leaderboard site and user-study sheets (installed as ``asva_bench.leaderboard``).

- ``build``: static site from results files (``asva-bench leaderboard build``)
- ``validate``: results schema, fingerprint and coverage checks (``leaderboard validate``)
- ``study``: per-rater preference sheets and their tally (``study make`` / ``study tally``)
- ``cli``: ``add_commands(subparsers)`` wires these into the ``asva-bench`` parser
"""
