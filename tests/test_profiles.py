"""The Profile object: protocols per dataset, registration, what adapters are handed, derived defaults."""

import pytest

from asva_bench.adapters import Adapter, setup_adapter
from asva_bench.profiles import (PROFILE_NAMES, PROFILES, get_profile, profile_of_protocol, registered_protocols)
from asva_bench.protocol import PAPER, PAPER_GREATEST_HITS


def test_every_protocol_a_profile_produces_is_registered():
    mini = get_profile("mini")
    tgh = mini.protocol_for(PAPER_GREATEST_HITS)
    assert (tgh.name, tgh.height, tgh.width, tgh.track) == ("mini-64x128", 64, 128, "corrected")
    reg = registered_protocols()
    assert {"paper-256", "paper-128x256", "mini-64", "mini-64x128"} <= set(reg)
    assert reg["mini-64x128"][0] is mini and reg["mini-64x128"][1] == tgh
    assert profile_of_protocol(tgh) is mini and profile_of_protocol(PAPER) is PROFILES["paper"]
    with pytest.raises(ValueError, match="not produced by any profile"):
        profile_of_protocol(PAPER.replace(name="mini-32"))


def test_the_leaderboard_accepts_the_mini_greatest_hits_protocol_and_no_made_up_one():
    from asva_bench.leaderboard.validate import check_protocol
    from asva_bench.protocol import fingerprint_of
    cfg = get_profile("mini").protocol_for(PAPER_GREATEST_HITS)
    block = {**cfg.to_dict(), "fingerprint": fingerprint_of(cfg.to_dict())}
    assert check_protocol({"profile": "mini", "protocol": block}) == []
    made_up = {**block, "name": "mini-48"}
    made_up["fingerprint"] = fingerprint_of({k: v for k, v in made_up.items() if k != "fingerprint"})
    problems = check_protocol({"profile": "mini", "protocol": made_up})
    assert [p.where for p in problems] == ["protocol.name"] and "mini-64x128" in problems[0].message


def test_profile_names_and_did_you_mean():
    assert PROFILE_NAMES == ("paper", "mini")
    with pytest.raises(ValueError, match="Did you mean 'mini'"):
        get_profile("mnii")


class Recorder(Adapter):
    name = "recorder"
    inputs = ("image",)

    def setup(self, protocol, device="cpu", profile=None):
        self.seen = (protocol.name, profile)


class OldStyle(Adapter):
    name = "old-style"
    inputs = ("image",)

    def setup(self, protocol, device="cpu"):
        self.seen = protocol.name


def test_adapters_are_handed_the_profile_and_old_signatures_still_work():
    mini = get_profile("mini")
    a = Recorder()
    setup_adapter(a, mini.protocol_for(PAPER), "cpu", mini)
    assert a.seen == ("mini-64", mini)
    b = OldStyle()
    setup_adapter(b, mini.protocol_for(PAPER), "cpu", mini)
    assert b.seen == "mini-64"


def test_avsyncd_sampler_defaults_derive_from_the_profiles():
    from asva_bench.models.avsyncd.adapter import AVSyncD
    cfg = AVSyncD().config()
    for key, attr in (("default_steps", "steps"), ("default_scheduler", "scheduler"),
                      ("default_strength", "strength"), ("default_conditioning", "conditioning")):
        assert cfg[key] == {n: getattr(p.sampler, attr) for n, p in PROFILES.items()}
    # the values the shipped results were fingerprinted with
    assert cfg["default_steps"] == {"paper": 50, "mini": 20} and cfg["default_strength"] == {"paper": 1.0, "mini": 0.5}


def test_suite_and_encoding_follow_the_profile():
    from asva_bench.avio import encoding_for
    from asva_bench.evaluators import load_suite
    assert load_suite("mini").names == PROFILES["mini"].backbones
    assert encoding_for("paper").quantisation == "truncate" and encoding_for("mini").quantisation == "round"
