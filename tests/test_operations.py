"""``stateful.operations``: the strategy draws only what the machine's options allow, every
kind of operation the options allow gets drawn, and ``why_not`` accepts exactly what the
strategy could have drawn.

``operations()`` asks Hypothesis's runner, which in a test method is the test class's instance,
for its options, as it asks the state machine in the suite."""

from hypothesis import given, settings
from hypothesis import strategies as st

from stateful.operations import (
    Emit,
    Options,
    RunInterleaved,
    Stall,
    SubscribeFrom,
    left_out_kinds,
    operations,
    why_not,
)
from stateful.strategy import PreemptionSchedule

option_sets = st.builds(
    Options,
    replay=st.booleans(),
    backlog_limit=st.booleans(),
    live=st.lists(st.sampled_from(["s1", "s2", "s3"]), unique=True).map(tuple),
    settled_emits=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    pending=st.integers(0, 3),
    left_out=left_out_kinds(),
)

EVERYTHING = Options(replay=True, backlog_limit=True, live=("s1",), settled_emits=(2, 0), pending=2)


class TestOperations:
    current: Options

    def options(self) -> Options:
        return self.current

    @given(st.data())
    def test_every_drawn_operation_fits_the_options(self, data: st.DataObject) -> None:
        self.current = data.draw(option_sets, label="options")
        # Several under the same options, so that each example can hit a rare corner.
        for _ in range(20):
            op = data.draw(operations(), label="op")
            assert why_not(op, self.current) is None


def test_every_possible_kind_is_drawn() -> None:
    seen: set[type] = set()

    class Machine:
        def options(self) -> Options:
            return EVERYTHING

        @settings(max_examples=300, derandomize=True, database=None)
        @given(operations())
        def draw(self, op: object) -> None:
            seen.add(type(op))

    Machine().draw()
    assert len(EVERYTHING.kinds()) == 9
    assert seen == set(EVERYTHING.kinds())


def test_what_the_options_forbid_is_refused() -> None:
    without = Options(replay=False, backlog_limit=False, live=(), settled_emits=(1, 0), pending=1)
    assert why_not(RunInterleaved(PreemptionSchedule()), without) is not None
    assert why_not(SubscribeFrom(slot=0, back=0), without) is not None
    assert why_not(Stall(subscriber="s1"), EVERYTHING) is None
    assert why_not(Stall(subscriber="s2"), EVERYTHING) is not None
    assert why_not(SubscribeFrom(slot=0, back=3), EVERYTHING) is not None
    assert why_not(Emit(producer=0, slot=2, count=1), EVERYTHING) is not None
    assert why_not(Emit(producer=0, slot=0, count=4), EVERYTHING) is not None
