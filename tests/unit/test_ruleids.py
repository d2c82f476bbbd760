"""Rule identities: compact text both backends put in the kernel (nft counter names, iptables comments) and a
log prefix can carry; decoded back exactly, hashed owners resolved by the policies Felix knows."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico.calculation import events as ev
from calico.dataplane import ruleids as rid

NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_./\-]*\Z")  # nft's unquoted identifier (an object name)


def test_examples_from_the_docstring() -> None:
    web = ev.PolicyID("default", "allow-web", "prod")
    assert rid.policy_rule(web, True, 0, rid.Action.ALLOW).text == "PIA//0/default/prod/allow-web"
    assert rid.policy_rule(ev.PolicyID("default", "allow-dns"), False, 2, rid.Action.ALLOW).text == \
        "PEA//2/default//allow-dns"
    assert rid.profile_rule("kns.prod", False, 0, rid.Action.ALLOW).text == "REA//0///kns.prod"
    assert rid.tier_default("security", True, rid.Stage.WORKLOAD).text == "TID/w//security"
    assert rid.verdict(rid.Kind.NO_MATCH, False, rid.Stage.WORKLOAD).text == "NED/w"
    assert rid.verdict(rid.Kind.SPOOFED, False, rid.Stage.WORKLOAD).text == "SED/w"
    assert rid.verdict(rid.Kind.UNKNOWN_IFACE, True, rid.Stage.WORKLOAD).text == "UID/w"
    assert rid.verdict(rid.Kind.FAILSAFE, True, rid.Stage.HOST, rid.Action.ALLOW).text == "FIA/h"


def test_of_rule_names_the_verdict_and_skips_log() -> None:
    pid = ev.PolicyID("t1", "p", "ns")
    assert rid.of_rule(pid, True, 3, "Deny") == rid.RuleID(rid.Kind.POLICY, rid.Direction.INGRESS, rid.Action.DENY,
                                                           index=3, tier="t1", namespace="ns", name="p")
    assert rid.of_rule("prof", False, 1, "Pass") == rid.profile_rule("prof", False, 1, rid.Action.PASS)
    assert rid.of_rule(pid, True, 0, "Log") is None
    assert rid.bad_rule("prof", True, 2).text == "BID//2///prof"
    assert rid.not_programmed(pid, False, rid.Stage.HOST).text == "MED/h//t1/ns/p"


def test_long_or_unsafe_owners_are_hashed_and_resolved() -> None:
    long_pid = ev.PolicyID("tier-" + "x" * 30, "policy-" + "y" * 40, "namespace-z")
    r = rid.policy_rule(long_pid, True, 12, rid.Action.DENY)
    text = r.text
    assert len(text) <= rid.MAX_LEN and NFT_NAME.match(text)
    decoded = rid.decode(text)
    assert decoded.hashed and decoded.name.startswith("_") and decoded.tier == decoded.namespace == ""
    assert (decoded.kind, decoded.direction, decoded.action, decoded.index) == (rid.Kind.POLICY, rid.Direction.INGRESS,
                                                                               rid.Action.DENY, 12)
    owners = rid.OwnerIndex([long_pid], ["prof"])
    assert owners.resolve(decoded) == r
    # A tier's own drop hashes the tier alone; the index knows every tier of the policies it was given.
    tier_drop = rid.tier_default(long_pid.tier + "-" + "w" * 40, True, rid.Stage.WORKLOAD)
    assert rid.decode(tier_drop.text).hashed
    assert rid.OwnerIndex(tiers=[tier_drop.tier]).resolve(rid.decode(tier_drop.text)) == tier_drop
    # Unknown hashes stay hashed (never a wrong name).
    assert rid.OwnerIndex().resolve(decoded) == decoded
    # A name with characters outside the set (or starting with "_") is hashed even when short.
    odd = rid.profile_rule("_odd", True, 0, rid.Action.ALLOW)
    assert rid.decode(odd.text).hashed and rid.OwnerIndex(profiles=["_odd"]).resolve(rid.decode(odd.text)) == odd
    assert rid.decode(rid.profile_rule("a b", True, 0, rid.Action.ALLOW).text).hashed


@pytest.mark.parametrize("text", [
    "", "pIA//0/x", "PIA/0", "XIA//0/t//n", "PIZ//0/t//n", "PIA/q/0/t//n", "PIA//x/t//n", "PIA//0/t//n/extra",
    "PIA//0/t//n/", "PIA//0/t//" + "n" * 60, "PIA//0/t//n m",
])
def test_decode_refuses_what_is_not_an_identity(text: str) -> None:
    with pytest.raises(ValueError, match="not a rule identity"):
        rid.decode(text)


_name = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-._/ Z"), min_size=1, max_size=80)


@given(kind=st.sampled_from(list(rid.Kind)), inbound=st.booleans(), action=st.sampled_from(list(rid.Action)),
       stage=st.sampled_from(list(rid.Stage)), index=st.none() | st.integers(0, 99999),
       tier=_name | st.just(""), ns=_name | st.just(""), name=_name | st.just(""))
def test_any_identity_round_trips_within_every_backends_limits(
    kind: rid.Kind, inbound: bool, action: rid.Action, stage: rid.Stage, index: int | None, tier: str, ns: str,
    name: str,
) -> None:
    r = rid.RuleID(kind, rid.direction(inbound), action, stage, index, tier, ns, name)
    text = r.text
    assert len(text) <= rid.MAX_LEN and NFT_NAME.match(text)
    back = rid.decode(text)
    if back.hashed:  # the owner did not fit: only an index that knows it gives the names back
        assert rid.OwnerIndex().resolve(back) == back
        owners = rid.OwnerIndex()
        owners.add(tier, ns, name)
        back = owners.resolve(back)
    assert back == r
