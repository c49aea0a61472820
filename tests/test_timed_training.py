"""anyorder.timed_training: the schedule's length planned from the speed so far."""

from anyorder.timed_training import planned_steps


def test_the_plan_fills_the_budget_at_the_speed_so_far():
    assert planned_steps(20, 1.0, 10.0, 1000) == 200        # 20 steps/s for 10 s
    assert planned_steps(200, 20.0, 10.0, 1000) == 201      # slowed down: one more step, then the clock stops it
    assert planned_steps(100, 1.0, 10.0, 500) == 500        # never past max_steps
    assert planned_steps(40, 1.0, 5.0, 1000) == 200         # sped up: the plan grows again


class FakeClock:
    """A budget clock that only advances when a training step runs: `per_step(step)` seconds
    for the step that ends at `step`, whatever the wall clock does."""

    def __init__(self, per_step):
        self.now, self.per_step = 0.0, per_step

    def __call__(self):
        return self.now


def fit_with_clock(monkeypatch, per_step, max_time, max_steps=1000):
    """An AnyOrderImputer fit (tiny net, 60 rows) whose budget reads a FakeClock; its steps."""
    import numpy as np

    import anyorder.imputer
    import anyorder.timed_training
    from anyorder import AnyOrderImputer

    clock = FakeClock(per_step)
    one_step = anyorder.timed_training.Training.one_step

    def timed_step(self):
        out = one_step(self)
        clock.now += clock.per_step(self.step)
        return out

    monkeypatch.setattr(anyorder.timed_training.Training, "one_step", timed_step)
    monkeypatch.setattr(anyorder.imputer, "budget_clock", lambda kind, device: clock)
    x = np.random.default_rng(0).normal(size=(60, 3))
    imputer = AnyOrderImputer(max_time=max_time, max_steps=max_steps, width=8, depth=1, components=2,
                              batch_size=16, random_state=0).fit(x)
    return imputer, clock


def test_the_budget_buys_the_steps_its_clock_allows_whatever_the_wall_clock(monkeypatch):
    # 1/64 s a step (exact in binary): after 20 steps, 0.3125 s, so a 2 s budget plans
    # 2 * 20 / 0.3125 = 128 steps, and the clock reaches 2.0 exactly at step 128.
    imputer, clock = fit_with_clock(monkeypatch, lambda step: 1 / 64, 2.0)
    assert imputer.n_steps_ == 128 and clock.now == 2.0
    # The steps halve their speed after step 40: at step 60 the clock reads
    # 40/64 + 20/32 = 1.25, plan 2 * 60 / 1.25 = 96; at step 80, 1.875, plan int(85.33) = 85;
    # 5 more steps at 1/32 end at 2.03125 > 2: the loop stops at the plan's end, step 85.
    imputer, clock = fit_with_clock(monkeypatch, lambda step: 1 / 64 if step <= 40 else 1 / 32, 2.0)
    assert imputer.n_steps_ == 85 and clock.now == 2.03125
    # max_steps caps the plan: 128 steps fit, 50 are allowed.
    imputer, _ = fit_with_clock(monkeypatch, lambda step: 1 / 64, 2.0, max_steps=50)
    assert imputer.n_steps_ == 50


def test_the_cpu_clock_does_not_count_time_spent_off_the_cpu():
    import time

    from anyorder.timed_training import budget_clock, thread_clock

    assert budget_clock("cpu", "cpu") is thread_clock and budget_clock("wall", "cpu") is time.perf_counter
    cpu, wall = thread_clock(), time.perf_counter()
    time.sleep(0.3)         # off the CPU, as a thread waiting for a core is
    # a sleeping thread uses no CPU time; 0.1 s leaves room for a coarse CPU-time tick
    assert time.perf_counter() - wall >= 0.3 and thread_clock() - cpu < 0.1
