"""ResponseSpool: order kept across memory and file, and the worker's side waits only
when both are full."""

import trio
import trio.testing

from faucet.proxy.spool import ResponseSpool


async def drain(spool: ResponseSpool) -> bytes:
    data = b""
    while chunk := await spool.get():
        data += chunk
    return data


async def test_bytes_come_out_in_order_across_memory_and_file():
    spool = ResponseSpool(memory_limit=10, file_limit=1000)
    try:
        pieces = [bytes([65 + i]) * 7 for i in range(20)]  # 140 bytes: most go to the file
        for piece in pieces:
            await spool.put(piece)
        assert spool.spilled > 0
        spool.close()
        assert await drain(spool) == b"".join(pieces)
    finally:
        await spool.aclose()


async def test_memory_is_used_again_once_the_file_has_drained():
    spool = ResponseSpool(memory_limit=4, file_limit=100)
    try:
        await spool.put(b"abcd")
        await spool.put(b"efgh")  # memory full: to the file
        assert (await spool.get(), await spool.get()) == (b"abcd", b"efgh")
        assert spool.spilled == 0
        await spool.put(b"ijkl")
        assert spool.spilled == 0  # back in memory
        spool.close()
        assert await drain(spool) == b"ijkl"
    finally:
        await spool.aclose()


async def test_the_writer_waits_only_when_memory_and_file_are_full():
    spool = ResponseSpool(memory_limit=4, file_limit=8)
    progress = []

    async def produce():
        for piece in (b"1111", b"2222", b"3333", b"4444"):
            await spool.put(piece)
            progress.append(piece)
        spool.close()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            with trio.fail_after(5):
                while len(progress) < 3:  # (a spill to the file runs in a thread)
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            assert progress == [b"1111", b"2222", b"3333"]  # memory 4 + file 8, then waits
            assert await drain(spool) == b"1111222233334444"
    finally:
        await spool.aclose()
