"""SharedMemory across real (spawned) processes."""
from __future__ import annotations

import multiprocessing

import pytest
from shmimage import SharedMemory
from workers_memory import (
    WAIT,
    attach_read_only,
    attach_read_write,
    check_last_byte,
    consumer_worker,
    finish,
    has_pattern,
    increment_worker,
    produce,
    send_native_key,
    write_pattern,
)

ctx = multiprocessing.get_context("spawn")


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    return conn.recv()



@pytest.mark.parametrize("key", ["QSharedMemoryExample", "Noël", "Nol", "k" * 500])
def test_native_key_is_the_same_in_another_process(procs, key: str) -> None:
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(send_native_key, key, child_end)
    child_end.close()
    assert receive(parent_end, "native key") == SharedMemory(key).native_key
    finish(proc)


def test_child_reads_and_writes_parent_segment(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(10_000)
        write_pattern(shm, 11)
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(attach_read_write, key, 11, 12, child_end)
        child_end.close()
        assert receive(parent_end, "size and check") == (10_000, True)
        assert receive(parent_end, "detach result") is True
        finish(proc)
        assert has_pattern(shm, 12)


def test_child_read_only_attach(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(3000)
        write_pattern(shm, 4)
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(attach_read_only, key, 4, child_end)
        child_end.close()
        assert receive(parent_end, "read-only check") == (True, True)
        finish(proc)


@pytest.mark.parametrize("consumers", [1, 5])
def test_producer_consumer_processes(procs, unique_key, consumers: int) -> None:
    key = unique_key()
    rounds = 25
    with SharedMemory(key) as producer:
        producer.create(64 * 1024)
        ready = [ctx.Event() for _ in range(consumers)]
        children = [procs.start(consumer_worker, key, rounds, event) for event in ready]
        for event in ready:
            assert event.wait(WAIT), "a consumer did not attach"
        produce(producer, consumers, rounds)
        for child in children:
            finish(child)


def test_lock_excludes_other_processes(procs, unique_key) -> None:
    key = unique_key()
    workers, rounds = 3, 400
    with SharedMemory(key) as shm:
        shm.create(64)
        start = ctx.Event()
        children = [procs.start(increment_worker, key, rounds, start) for _ in range(workers)]
        start.set()
        for _ in range(rounds):
            with shm.locked(timeout=WAIT), shm.data as mv:
                mv[:8] = (int.from_bytes(mv[:8], "little") + 1).to_bytes(8, "little")
        for child in children:
            finish(child)
        with shm.data as mv:
            assert int.from_bytes(mv[:8], "little") == (workers + 1) * rounds


def test_large_segment_across_processes(procs, unique_key) -> None:
    key = unique_key()
    size = 64 * 1024 * 1024 + 3
    with SharedMemory(key) as shm:
        shm.create(size)
        with shm.data as mv:
            mv[0] = 7
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(check_last_byte, key, child_end)
        child_end.close()
        assert receive(parent_end, "facts") == (size, 0, 7)
        finish(proc)
        with shm.data as mv:
            assert mv[-1] == 0x5A
