"""anyorder.timed_training: the schedule's length planned from the speed so far."""

from anyorder.timed_training import planned_steps


def test_the_plan_fills_the_budget_at_the_speed_so_far():
    assert planned_steps(20, 1.0, 10.0, 1000) == 200        # 20 steps/s for 10 s
    assert planned_steps(200, 20.0, 10.0, 1000) == 201      # slowed down: one more step, then the clock stops it
    assert planned_steps(100, 1.0, 10.0, 500) == 500        # never past max_steps
    assert planned_steps(40, 1.0, 5.0, 1000) == 200         # sped up: the plan grows again
