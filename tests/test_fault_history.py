"""Seeded random faults against two pods and a Sentinel-managed Redis, judged by a history
checker (tests/fault_history.py; docs/ha.md, "Fault injection").

The default run injects faults for 20 s (``FAULT_BUDGET``; 120 s when ``CI=true``); the seed
is printed at the start and named in the failure message, and ``FAULT_SEED=<seed>`` replays
it. ``FAULT_PARTIAL=1`` adds the partial deletions (off by default until the pods repair them:
``PARTIAL_DELETIONS`` in tests/fault_history.py); ``FAULT_ONLY=flushall,del_epoch`` runs just
the named faults; ``FAULT_SERVER=valkey`` runs the Sentinel set on Valkey.

The checker itself is tested first, on hand-made histories: each kind of violation is found,
and the allowances (repair window, timeout + grace, Redis outages, stale answers) hold.
"""

from __future__ import annotations

import os

import pytest

from tests.fault_history import (
    CORE_FAULTS,
    DEAD_GRACE_S,
    PARTIAL_FAULTS,
    REPAIR_WINDOW_S,
    Answer,
    History,
    Route,
    check_history,
    fault_budget_s,
    fault_seed,
    run_seed,
)

A, B = "10.9.0.1:10911", "10.9.0.2:10911"


def route(*brokers: tuple[str, str]) -> Route:
    return (
        tuple(sorted((name, (addr,)) for name, addr in brokers)),
        tuple(sorted((name, "8,8,6,0") for name, _ in brokers)),
    )


def history(until: float = 30.0) -> History:
    """Broker a (address A) registered topic T at 0 s and heartbeats every 0.5 s; broker b
    (address B) registered T at 0 s, stopped at 10 s after its last heartbeat at 9.5 s."""
    h = History(timeout_s=6.0)
    h.registered(A, "a", frozenset({"T"}))
    h.registered(B, "b", frozenset({"T"}))
    for i in range(int(until * 2)):
        h.ack(A, i / 2)
        if i / 2 < 10:
            h.ack(B, i / 2)
    h.stopped(B, 10.0)
    return h


def test_a_clean_history_holds() -> None:
    h = history()
    for t in (1.0, 5.0, 9.0):
        h.answers += [
            Answer(t, 0, "T", route(("a", A), ("b", B))),
            Answer(t, 1, "T", route(("a", A), ("b", B))),
        ]
    for t in (10.5, 12.0, 13.5):  # b named after it stopped, before its deadline + grace
        h.answers.append(Answer(t, 0, "T", route(("a", A), ("b", B))))
        h.answers.append(Answer(t, 1, "T", route(("a", A))))
    for t in (15.0, 16.5):  # the pods agree again within the repair window
        h.answers += [Answer(t, 0, "T", route(("a", A))), Answer(t, 1, "T", route(("a", A)))]
    h.answers.append(Answer(1.0, 0, "T", None))  # missing inside the repair window: allowed
    assert check_history(h) == []


def test_an_acknowledged_registration_lost_is_found() -> None:
    h = history()
    h.answers.append(Answer(REPAIR_WINDOW_S + 1, 1, "T", route(("b", B))))
    h.answers.append(Answer(REPAIR_WINDOW_S + 2, 0, "T", None))
    problems = check_history(h)
    assert len(problems) == 3 and all(p.startswith("lost:") for p in problems), problems
    assert "no queue data of a" in problems[0]
    assert all("TOPIC_NOT_EXIST" in p for p in problems[1:])


def test_a_broker_back_after_a_gap_gets_a_new_repair_window() -> None:
    h = History(timeout_s=6.0)
    h.registered(A, "a", frozenset({"T"}))
    h.ack(A, 0.0)
    h.ack(A, 10.0)  # 10 s without an acknowledgement: Redis may have expired it meanwhile
    h.ack(A, 10.5)
    h.answers.append(Answer(11.0, 0, "T", None))
    assert check_history(h) == []
    h.answers.append(Answer(10.0 + REPAIR_WINDOW_S + 0.2, 0, "T", None))
    for second in range(11, int(10.0 + REPAIR_WINDOW_S) + 2):  # heartbeating meanwhile
        h.ack(A, float(second))
    assert [p[:5] for p in check_history(h)] == ["lost:"]


def test_a_route_to_a_dead_broker_is_found_and_outages_extend_its_grace() -> None:
    h = history()
    late = 9.5 + h.timeout_s + DEAD_GRACE_S + 0.5
    h.answers.append(Answer(late, 0, "T", route(("a", A), ("b", B))))
    problems = check_history(h)
    assert len(problems) == 1 and problems[0].startswith("dead:") and B in problems[0]
    h.outages.append((12.0, 13.0))  # Redis could not remove anything for a second
    assert check_history(h) == []


def test_a_loss_restarts_the_repair_window_and_may_extend_a_deadline() -> None:
    h = history()
    h.losses.append((20.0, 20.5))  # FLUSHALL: routes may be missing for one repair window
    h.answers.append(Answer(21.0, 0, "T", None))
    assert check_history(h) == []
    h.answers.append(Answer(20.5 + REPAIR_WINDOW_S + 0.1, 0, "T", None))
    assert [p[:5] for p in check_history(h)] == ["lost:"]  # a's; b stopped at 10 s
    h.answers = [Answer(21.0, 0, "T", route(("a", A)))]
    h.losses.append((12.0, 12.5))  # a loss inside b's timeout: re-applied with a fresh one
    h.answers.append(
        Answer(12.5 + h.timeout_s + DEAD_GRACE_S - 0.5, 0, "T", route(("a", A), ("b", B)))
    )
    assert check_history(h, reapply_resets_deadlines=True) == []
    assert [p[:5] for p in check_history(h, reapply_resets_deadlines=False)] == ["dead:"]


def test_a_paused_broker_that_resumed_is_alive_again() -> None:
    h = history()
    h.ack(B, 25.0)  # registered again: a new life
    h.answers.append(Answer(26.0, 0, "T", route(("a", A), ("b", B))))
    assert check_history(h) == []


def test_a_lasting_disagreement_between_pods_is_found() -> None:
    h = history()
    t = 20.0
    while t < 20.0 + REPAIR_WINDOW_S + 1:
        h.answers.append(Answer(t, 0, "T", route(("a", A), ("x", "10.9.9.9:1"))))
        h.answers.append(Answer(t + 0.1, 1, "T", route(("a", A))))
        t += 0.3
    problems = [p for p in check_history(h) if p.startswith("disagree:")]
    assert len(problems) == 1 and "'T'" in problems[0], problems


def test_a_short_disagreement_or_a_silent_pod_is_not_one() -> None:
    h = history()
    for t in (20.0, 20.3):  # the pods differ for under the repair window
        h.answers.append(Answer(t, 0, "T", route(("a", A), ("x", "10.9.9.9:1"))))
        h.answers.append(Answer(t + 0.1, 1, "T", route(("a", A))))
    h.answers.append(Answer(21.0, 0, "T", route(("a", A))))
    for t in range(22, 30):  # pod 1 says nothing (dead): its last answer goes stale
        h.answers.append(Answer(float(t), 0, "T", route(("a", A), ("x", "10.9.9.9:1"))))
    assert [p for p in check_history(h) if p.startswith("disagree:")] == []


def test_the_budget_and_seed_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_SEED", "1234")
    monkeypatch.delenv("FAULT_BUDGET", raising=False)
    monkeypatch.setenv("CI", "true")
    assert fault_seed() == 1234 and fault_budget_s() == 120
    monkeypatch.setenv("FAULT_BUDGET", "7")
    assert fault_budget_s() == 7
    assert set(CORE_FAULTS).isdisjoint(PARTIAL_FAULTS)


@pytest.mark.slow
@pytest.mark.real_redis
async def test_random_faults_lose_nothing_and_leave_no_dead_routes(namespace: str) -> None:
    seed = fault_seed()
    only = [f for f in os.environ.get("FAULT_ONLY", "").split(",") if f]
    unknown = set(only) - set(CORE_FAULTS) - set(PARTIAL_FAULTS)
    assert not unknown, f"unknown faults in FAULT_ONLY: {sorted(unknown)}"
    run, problems = await run_seed(
        namespace,
        seed,
        fault_budget_s(),
        kind=os.environ.get("FAULT_SERVER", "redis"),
        only=only or None,
    )
    print(run.report(problems))
    assert run.history.faults, f"FAULT_SEED={seed}: no fault was injected"
    assert run.history.answers, f"FAULT_SEED={seed}: no route was answered"
    assert not problems, run.report(problems)
