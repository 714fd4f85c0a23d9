"""ClientCancel: a client's give-up cancels its request, except while the worker has it."""

import trio

from faucet.http.client_cancel import ClientCancel


async def test_a_give_up_before_the_request_is_sent_cancels_at_once():
    cancel = ClientCancel()
    cancel.give_up()
    sent = []
    with cancel.scope:
        with cancel.committed():
            await trio.lowlevel.checkpoint()
            sent.append("request")
    assert (sent, cancel.scope.cancelled_caught) == ([], True)


async def test_a_give_up_while_committed_waits_for_the_answer_head():
    cancel = ClientCancel()
    steps = []
    with cancel.scope:
        with cancel.committed():
            cancel.give_up()
            await trio.lowlevel.checkpoint()  # the worker's answer is awaited on
            steps.append("answer head read")
        steps.append("after")  # no checkpoint yet: still running
        await trio.lowlevel.checkpoint()
        steps.append("never")
    assert steps == ["answer head read", "after"]


def test_finish_tells_the_edge_once():
    cancel = ClientCancel()
    calls = []
    cancel.on_finish = lambda: calls.append(1)
    cancel.finish()
    cancel.finish()
    assert calls == [1]
