"""The request slots and their queue under random sequences of requests that arrive (willing to wait or not), finish,
and give up while waiting (hypothesis' rule-based state machine, on a real event loop). After every step:
- no more than `limit` requests hold a slot, and no more than `limit` wait;
- a request that gives up as it is handed a slot keeps it or passes it on, never loses it;
- the slots in use are the requests that hold one, and none waits while a slot is free;
- slots are given in the order the requests arrived, and a request is refused only when it could neither take a slot
  nor wait for one, or its wait ended.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kmem_exporter.web.shedding import RequestSlots

LIMIT = 3
LONG = 3600.0  # a wait that does not end within a test


class Slots(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.slots = RequestSlots(LIMIT)
        self.holding: list[int] = []  # requests that hold a slot, in the order they got it
        self.waiting: dict[int, asyncio.Task[bool]] = {}  # in the order they arrived
        self.granted: list[int] = []  # every request given a slot, in order
        self.arrived = 0

    def settle(self) -> None:
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))
        for number, task in list(self.waiting.items()):
            if task.done():
                del self.waiting[number]
                if not task.cancelled() and task.result():
                    self.holding.append(number)
                    self.granted.append(number)

    async def settled(self) -> None:
        await asyncio.gather(*self.waiting.values(), return_exceptions=True)

    @rule(willing=st.booleans())
    def a_request_arrives(self, willing: bool) -> None:
        number, self.arrived = self.arrived, self.arrived + 1
        could_take = self.slots.in_use < LIMIT
        could_wait = len(self.waiting) < LIMIT
        task = self.loop.create_task(self.slots.take(LONG if willing else 0.0))
        self.waiting[number] = task
        self.settle()
        if task.done():
            if task.result():
                assert could_take, "given a slot while none was free"
            else:
                assert not could_take and (not willing or not could_wait), "refused with room to take or wait"
        else:
            assert willing and not could_take and could_wait

    @precondition(lambda self: bool(self.holding))
    @rule(which=st.integers(min_value=0))
    def a_request_finishes(self, which: int) -> None:
        self.holding.pop(which % len(self.holding))
        self.slots.release()
        self.settle()

    @precondition(lambda self: bool(self.waiting))
    @rule(which=st.integers(min_value=0))
    def a_waiting_client_gives_up(self, which: int) -> None:
        task = list(self.waiting.values())[which % len(self.waiting)]
        task.cancel()
        self.settle()
        assert task.cancelled()

    @precondition(lambda self: bool(self.holding) and bool(self.waiting))
    @rule(which=st.integers(min_value=0))
    def a_request_finishes_as_the_next_gives_up(self, which: int) -> None:
        """The slot is handed to the longest waiting request, whose client gives up before it runs again: the request
        keeps the slot (and is answered, or gives it back as it ends), or passes it on."""
        self.holding.pop(which % len(self.holding))
        self.slots.release()
        next(iter(self.waiting.values())).cancel()
        self.settle()

    @invariant()
    def bounded(self) -> None:
        assert self.slots.in_use <= LIMIT and self.slots.waiting <= LIMIT

    @invariant()
    def slots_in_use_are_the_holders_and_none_waits_while_one_is_free(self) -> None:
        assert self.slots.in_use == len(self.holding)
        assert self.slots.waiting == len(self.waiting)
        assert not self.waiting or self.slots.in_use == LIMIT

    @invariant()
    def given_in_order_of_arrival(self) -> None:
        assert self.granted == sorted(self.granted)

    def teardown(self) -> None:
        for task in self.waiting.values():
            task.cancel()
        self.loop.run_until_complete(asyncio.wait_for(self.settled(), None))
        self.loop.close()


def test_request_slots() -> None:
    Slots.TestCase.settings = settings(max_examples=200, stateful_step_count=30, derandomize=True, database=None,
                                       deadline=None)
    Slots.TestCase().runTest()


def test_a_wait_that_ends_refuses_and_leaves_the_queue() -> None:
    async def scenario() -> Optional[bool]:
        slots = RequestSlots(1)
        assert await slots.take(0.0)
        refused = await slots.take(0.05)
        assert slots.waiting == 0 and slots.in_use == 1
        slots.release()
        assert slots.in_use == 0
        return refused

    assert asyncio.run(scenario()) is False
