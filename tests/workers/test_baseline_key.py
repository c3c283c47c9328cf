"""What a baseline is reused for: the spec_hash of the verification spec it was taken with."""

from __future__ import annotations

from dataclasses import replace

from verification.verify import VerifySpec
from workers.pipeline.baselines import spec_hash

SPEC = VerifySpec(test_cmd="pytest -q", timeout=60.0, setup_cmd="pip install -e .", setup_network="proxy")


def test_a_baseline_taken_with_another_setup_network_is_not_reused() -> None:
    """A setup that installed from the host's network may have built what the proxy's allow-list cannot."""
    keys = {spec_hash(replace(SPEC, setup_network=network)) for network in ("proxy", "host", "none")}
    assert len(keys) == 3


def test_this_runs_port_block_and_environment_do_not_change_the_key() -> None:
    assert spec_hash(replace(SPEC, env={"FLEET_PORT_BASE": "20000"})) == spec_hash(SPEC)
    assert spec_hash(replace(SPEC, setup_egress=lambda: None)) == spec_hash(SPEC)  # type: ignore[arg-type,return-value]
