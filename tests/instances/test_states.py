"""The operation state machine and the polling schedule, as pure functions (no database, no broker)."""

from __future__ import annotations

import itertools

import pytest

from instances.states import (
    ACTIVE,
    MIN_HISTORY,
    TERMINAL,
    OpState,
    can_transition,
    describe_wait,
    learned_poll_times,
    operation_jitter,
    poll_delay,
    retry_delay,
)


def poll_times(*, until: float) -> list[float]:
    """When the engine polls an operation accepted at t=0, up to the first poll at or after `until`.

    Mirrors the engine: the first poll is `poll_delay(polls=0, elapsed=0)` after acceptance, and after the
    n-th poll (n >= 1) the next one is `poll_delay(polls=n, elapsed=now)` later.
    """
    times = [poll_delay(polls=0, elapsed=0)]
    while times[-1] < until:
        times.append(times[-1] + poll_delay(polls=len(times), elapsed=times[-1]))
        assert len(times) < 10_000
    return times


def worst_detection_delay(times: list[float], *, start: float, end: float) -> float:
    """The longest an operation finishing in (start, end] waits for the next poll to notice it."""
    worst = 0.0
    previous = 0.0
    for t in times:
        lo, hi = max(previous, start), min(t, end)
        if hi > lo:  # finishing just after max(previous poll, start) is seen at t
            worst = max(worst, t - lo)
        previous = t
    return worst


# --- poll_delay ------------------------------------------------------------------------------------


def test_first_poll_after_two_seconds() -> None:
    assert poll_delay(polls=0, elapsed=0) == 2.0


@pytest.mark.parametrize(("polls", "expected"), [(0, 2.0), (1, 3.0), (2, 4.5), (3, 6.75), (4, 10.125),
                                                  (5, 15.1875), (6, 22.78125)])
def test_poll_delay_grows_by_one_and_a_half(polls: int, expected: float) -> None:
    assert poll_delay(polls=polls, elapsed=10) == pytest.approx(expected)


@pytest.mark.parametrize("polls", [7, 8, 10, 50, 1000])
def test_poll_delay_is_capped_at_30_seconds_in_the_first_ten_minutes(polls: int) -> None:
    assert poll_delay(polls=polls, elapsed=0) == 30.0
    assert poll_delay(polls=polls, elapsed=599.9) == 30.0


@pytest.mark.parametrize("polls", [9, 12, 50, 1000])
def test_poll_delay_is_one_minute_after_ten_minutes(polls: int) -> None:
    assert poll_delay(polls=polls, elapsed=600) == 60.0
    assert poll_delay(polls=polls, elapsed=3 * 3600) == 60.0


def test_poll_delay_never_shrinks_as_polls_grow() -> None:
    for elapsed in (0, 120, 600, 3600):
        delays = [poll_delay(polls=n, elapsed=elapsed) for n in range(40)]
        assert delays == sorted(delays)
        assert min(delays) >= 2.0


def test_negative_poll_count_is_treated_as_zero() -> None:
    assert poll_delay(polls=-3, elapsed=0) == 2.0


def test_five_minute_operation_needs_at_most_15_polls() -> None:
    times = poll_times(until=300)
    assert len(times) <= 15
    assert times[-1] - 300 <= 30  # seen at most 30 s late


def test_one_hour_operation_needs_at_most_80_polls() -> None:
    times = poll_times(until=3600)
    assert len(times) <= 80
    assert times[-1] - 3600 <= 60


def test_short_operations_are_seen_quickly() -> None:
    times = poll_times(until=60)
    assert times[:3] == pytest.approx([2.0, 5.0, 9.5])
    # An operation that is done within 10 s is noticed within ~5 s.
    assert worst_detection_delay(times, start=0, end=10) <= 7


def test_worst_detection_delay_is_30_s_early_and_60_s_late() -> None:
    times = poll_times(until=4 * 3600)
    # Operations of about five minutes (even a little longer) are seen within 30 s.
    assert worst_detection_delay(times, start=0, end=600) <= 30.0 + 1e-9
    assert worst_detection_delay(times, start=600, end=4 * 3600) <= 60.0 + 1e-9
    # ... and the schedule really does use those caps (the bounds are tight, not vacuous).
    assert worst_detection_delay(times, start=0, end=600) >= 29.0
    assert worst_detection_delay(times, start=600, end=4 * 3600) >= 59.0


# --- retry_delay -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "expected"), [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0),
                                                     (8, 256.0), (9, 300.0), (30, 300.0)])
def test_retry_delay_doubles_up_to_five_minutes(attempts: int, expected: float) -> None:
    assert retry_delay(attempts=attempts) == expected


def test_retry_delay_honours_a_custom_cap() -> None:
    assert retry_delay(attempts=10, cap=60) == 60
    assert retry_delay(attempts=2, cap=60) == 4


# --- transitions -----------------------------------------------------------------------------------

EXPECTED_TRANSITIONS = {
    (OpState.PENDING, OpState.PENDING): False,
    (OpState.PENDING, OpState.IN_PROGRESS): True,
    (OpState.PENDING, OpState.SUCCEEDED): True,
    (OpState.PENDING, OpState.FAILED): True,
    (OpState.IN_PROGRESS, OpState.PENDING): False,
    (OpState.IN_PROGRESS, OpState.IN_PROGRESS): True,
    (OpState.IN_PROGRESS, OpState.SUCCEEDED): True,
    (OpState.IN_PROGRESS, OpState.FAILED): True,
    (OpState.SUCCEEDED, OpState.PENDING): False,
    (OpState.SUCCEEDED, OpState.IN_PROGRESS): False,
    (OpState.SUCCEEDED, OpState.SUCCEEDED): False,
    (OpState.SUCCEEDED, OpState.FAILED): False,
    (OpState.FAILED, OpState.PENDING): False,
    (OpState.FAILED, OpState.IN_PROGRESS): False,
    (OpState.FAILED, OpState.SUCCEEDED): False,
    (OpState.FAILED, OpState.FAILED): False,
}


def test_transition_table_covers_every_pair() -> None:
    assert set(EXPECTED_TRANSITIONS) == set(itertools.product(OpState, OpState))


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED_TRANSITIONS))
def test_can_transition(current: OpState, target: OpState) -> None:
    assert can_transition(current, target) is EXPECTED_TRANSITIONS[(current, target)]
    assert can_transition(current.value, target.value) is EXPECTED_TRANSITIONS[(current, target)]


def test_terminal_states_are_final_and_active_ones_are_not() -> None:
    assert set(OpState) == ACTIVE | TERMINAL
    assert not ACTIVE & TERMINAL
    for state in TERMINAL:
        assert not any(can_transition(state, target) for target in OpState)
    for state in ACTIVE:
        assert all(can_transition(state, target) for target in TERMINAL)


def test_unknown_state_is_rejected() -> None:
    with pytest.raises(ValueError):
        can_transition("exploded", OpState.FAILED)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (-5, "0 s"), (2.4, "2 s"), (119, "119 s"), (120, "2 min"),
                                               (1800, "30 min"), (7199, "120 min"), (7200, "2 h"), (86400, "24 h")])
def test_describe_wait(seconds: float, text: str) -> None:
    assert describe_wait(seconds) == text


# --- the learned schedule (a plan's history) and jitter -------------------------------------------------------


def _detect(end: float, history: list[float], jitter: float = 0.0) -> tuple[int, float]:
    """Polls made and detection delay for an operation ending `end` s after acceptance (as the engine schedules)."""
    t = poll_delay(polls=0, elapsed=0, history=history, jitter=jitter)
    polls = 1
    while t < end:
        t += poll_delay(polls=polls, elapsed=t, history=history, jitter=jitter)
        polls += 1
    return polls, t - end


FIVE_MINUTES_HISTORY = [300 * (0.9 + 0.2 * i / 19) for i in range(20)]  # 20 earlier operations, 5 min +/- 10 %


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_a_learned_schedule_polls_densely_around_the_expected_finish(jitter: float) -> None:
    for k in range(121):
        end = 270 + 60 * k / 120 + 0.001  # anywhere in 5 min +/- 10 %
        polls, delay = _detect(end, FIVE_MINUTES_HISTORY, jitter)
        assert polls <= 12, end
        assert delay <= 10.0, end


def test_a_learned_schedule_is_sparse_before_the_window_but_still_sees_a_quick_failure() -> None:
    times, step = learned_poll_times(FIVE_MINUTES_HISTORY)
    assert times[0] == 2.0  # a quick failure is seen at once
    before = [t for t in times if t < 270]
    assert len(before) <= 3
    assert 2.0 <= step <= 8.5


def test_a_learned_schedule_keeps_polling_after_the_window() -> None:
    _, delay = _detect(600.0, FIVE_MINUTES_HISTORY)
    assert delay <= 30.0
    assert poll_delay(polls=40, elapsed=5000, history=FIVE_MINUTES_HISTORY) <= 60.0


def test_too_little_history_keeps_the_default_schedule() -> None:
    few = FIVE_MINUTES_HISTORY[:MIN_HISTORY - 1]
    assert [poll_delay(polls=n, elapsed=10 * n, history=few) for n in range(12)] == \
        [poll_delay(polls=n, elapsed=10 * n) for n in range(12)]


def test_jitter_spreads_polls_without_late_detection() -> None:
    delays = {poll_delay(polls=3, elapsed=20, jitter=operation_jitter(str(n))) for n in range(50)}
    assert len(delays) > 10  # operations started together do not poll together
    assert all(6.75 <= d <= 6.75 * 1.1 for d in delays)
    assert all(poll_delay(polls=n, elapsed=100, jitter=j / 10) <= 30 for j in range(10) for n in range(20))  # cap
    assert operation_jitter("a") == operation_jitter("a")  # stable per operation
