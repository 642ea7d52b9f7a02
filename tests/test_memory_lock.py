"""The segment's process-shared lock, exercised from threads of one process."""
from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from shmimage import (
    AccessMode,
    AlreadyExistsError,
    ErrorCode,
    LockError,
    NotFoundError,
    SharedMemory,
)
from workers_memory import WAIT, consume, produce


@pytest.fixture
def shm(unique_key) -> Iterator[SharedMemory]:
    with SharedMemory(unique_key()) as segment:
        segment.create(1024)
        yield segment


def in_thread(func: Callable[[], Any]) -> Any:
    """Run func in another thread and return its result (or raise its exception)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "thread did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_lock_and_unlock(shm: SharedMemory) -> None:
    assert shm.lock() is True
    assert shm.owner_died is False
    shm.unlock()
    assert shm.lock(timeout=0) is True
    shm.unlock()
    assert shm.error == ErrorCode.NO_ERROR


def test_lock_is_not_recursive(shm: SharedMemory) -> None:
    assert shm.lock()
    with pytest.raises(LockError) as info:
        shm.lock()
    assert info.value.code == ErrorCode.LOCK_ERROR
    assert shm.error == ErrorCode.LOCK_ERROR
    shm.unlock()


def test_unlock_when_not_held(shm: SharedMemory) -> None:
    with pytest.raises(LockError):
        shm.unlock()
    assert shm.lock()
    shm.unlock()
    with pytest.raises(LockError):
        shm.unlock()


def test_unlock_from_another_thread(shm: SharedMemory) -> None:
    assert shm.lock()
    try:
        with pytest.raises(LockError):
            in_thread(shm.unlock)
    finally:
        shm.unlock()


def test_lock_times_out_while_held_by_another_thread(shm: SharedMemory) -> None:
    assert shm.lock()
    try:
        assert in_thread(lambda: shm.lock(timeout=0.2)) is False
        assert in_thread(lambda: shm.lock(timeout=0)) is False
    finally:
        shm.unlock()
    assert in_thread(lambda: _lock_unlock(shm)) is True


def test_lock_times_out_for_another_object(shm: SharedMemory) -> None:
    with SharedMemory(shm.key) as other:
        other.attach()
        assert shm.lock()
        try:
            assert in_thread(lambda: other.lock(timeout=0.2)) is False
        finally:
            shm.unlock()
        assert in_thread(lambda: _lock_unlock(other)) is True


def _lock_unlock(segment: SharedMemory) -> bool:
    got = segment.lock(timeout=WAIT)
    segment.unlock()
    return got


def test_locked_context_manager(shm: SharedMemory) -> None:
    with shm.locked():
        with pytest.raises(LockError):
            shm.lock()
        assert in_thread(lambda: shm.lock(timeout=0)) is False
    assert in_thread(lambda: _lock_unlock(shm)) is True


def test_locked_unlocks_on_exception(shm: SharedMemory) -> None:
    with pytest.raises(RuntimeError), shm.locked(timeout=WAIT):
        raise RuntimeError("boom")
    assert in_thread(lambda: _lock_unlock(shm)) is True


def test_locked_raises_timeout_error(shm: SharedMemory) -> None:
    def try_locked() -> None:
        with shm.locked(timeout=0.2):
            raise AssertionError("got a lock another thread holds")

    assert shm.lock()
    try:
        with pytest.raises(TimeoutError):
            in_thread(try_locked)
    finally:
        shm.unlock()


def test_detach_releases_a_held_lock(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as owner, SharedMemory(key) as holder:
        owner.create(64)
        holder.attach()
        assert holder.lock()
        assert holder.detach()
        assert owner.lock(timeout=0) is True
        assert owner.owner_died is False
        owner.unlock()
        assert in_thread(lambda: _lock_unlock(owner)) is True


def test_read_only_attach_cannot_lock(shm: SharedMemory) -> None:
    with SharedMemory(shm.key) as reader:
        reader.attach(AccessMode.READ_ONLY)
        with pytest.raises(LockError):
            reader.lock()
        with pytest.raises(LockError):
            reader.lock(timeout=0)
        with pytest.raises(LockError), reader.locked():
            pass
        assert reader.error == ErrorCode.LOCK_ERROR


def test_blocking_lock_releases_the_gil(shm: SharedMemory) -> None:
    """A thread blocked in lock() must let this thread run and unlock."""
    waiting = threading.Event()
    result: dict[str, bool] = {}

    def waiter() -> None:
        waiting.set()
        result["got"] = shm.lock(timeout=WAIT)
        shm.unlock()

    assert shm.lock()
    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert waiting.wait(WAIT)
    # Busy Python work here needs the GIL while the waiter is blocked.
    total = sum(i * i for i in range(200_000))
    assert total > 0
    shm.unlock()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result["got"] is True


def test_threads_exclude_each_other(shm: SharedMemory) -> None:
    """Increments under the lock from several threads are never lost."""
    rounds, threads = 2000, 4

    def bump() -> None:
        for _ in range(rounds):
            with shm.locked(timeout=WAIT), shm.data as mv:
                value = int.from_bytes(mv[:4], "little") + 1
                mv[:4] = value.to_bytes(4, "little")

    workers = [threading.Thread(target=bump, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
        assert not worker.is_alive()
    with shm.data as mv:
        assert int.from_bytes(mv[:4], "little") == rounds * threads


def test_producer_consumer_one_process(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as producer, SharedMemory(key) as consumer:
        producer.create(4096)
        consumer.attach()
        # One thread, alternating: produce one round, then consume it.
        for r in range(1, 21):
            with producer.locked(timeout=WAIT), producer.data as mv:
                mv[16:] = bytes([r % 256]) * (len(mv) - 16)
            with consumer.locked(timeout=WAIT), consumer.data as mv:
                assert bytes(mv[16:]) == bytes([r % 256]) * (len(mv) - 16)


@pytest.mark.parametrize("consumers", [1, 5])
@pytest.mark.parametrize("shared_object", [False, True])
def test_producer_consumer_threads(unique_key, consumers: int, shared_object: bool) -> None:
    key = unique_key()
    rounds = 30
    with SharedMemory(key) as producer:
        producer.create(8192)
        segments = [producer if shared_object else SharedMemory(key) for _ in range(consumers)]
        for segment in segments:
            if segment is not producer:
                segment.attach()
        errors: list[BaseException] = []

        def run(segment: SharedMemory) -> None:
            try:
                consume(segment, rounds)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=run, args=(s,), daemon=True) for s in segments]
        for worker in workers:
            worker.start()
        try:
            produce(producer, consumers, rounds)
        finally:
            for worker in workers:
                worker.join(WAIT)
        assert not any(worker.is_alive() for worker in workers)
        assert not errors, errors
        for segment in segments:
            if segment is not producer:
                assert segment.detach()


def test_thread_that_exits_holding_the_lock(shm: SharedMemory) -> None:
    """A holder thread that ends without unlocking counts as a dead owner."""
    assert in_thread(lambda: shm.lock(timeout=WAIT)) is True
    assert shm.lock(timeout=WAIT) is True
    assert shm.owner_died is True
    shm.unlock()
    assert shm.lock(timeout=WAIT) is True
    assert shm.owner_died is False
    shm.unlock()


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan")])
def test_lock_with_bad_timeout(shm: SharedMemory, timeout: float) -> None:
    with pytest.raises(ValueError):
        shm.lock(timeout=timeout)
    assert shm.lock(timeout=0) is True
    shm.unlock()


def test_second_object_in_the_holding_thread(shm: SharedMemory) -> None:
    """Ownership is per thread: locking again through another object is refused."""
    with SharedMemory(shm.key) as other:
        other.attach()
        assert shm.lock()
        try:
            with pytest.raises(LockError):
                other.lock(timeout=5)
        finally:
            shm.unlock()
        assert other.lock(timeout=0) is True
        other.unlock()


def _try_lock(segment: SharedMemory) -> tuple[bool, bool]:
    """lock(timeout=0) and unlock again: (got it, owner_died)."""
    got = segment.lock(timeout=0)
    died = segment.owner_died
    if got:
        segment.unlock()
    return got, died


def test_dropping_a_holder_releases_the_lock(shm: SharedMemory) -> None:
    holder = SharedMemory(shm.key)
    holder.attach()
    assert holder.lock()
    del holder
    gc.collect()
    assert in_thread(lambda: _try_lock(shm)) == (True, False)


def test_detach_after_the_holding_thread_ended(shm: SharedMemory) -> None:
    """The object holds the lock through a thread that is gone: detach still works."""
    holder = SharedMemory(shm.key)
    holder.attach()
    assert in_thread(lambda: holder.lock(timeout=WAIT)) is True
    assert holder.detach() is True
    assert in_thread(lambda: _try_lock(shm))[0] is True


def test_threads_churning_one_name(unique_key) -> None:
    """Create-or-attach, lock, detach from several threads at once."""
    key = unique_key()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(150):
                shm = SharedMemory(key)
                try:
                    shm.create(128)
                except AlreadyExistsError:
                    try:
                        shm.attach()
                    except NotFoundError:
                        continue
                assert shm.size == 128
                with shm.locked(timeout=WAIT):
                    pass
                assert shm.detach()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
        assert not thread.is_alive()
    assert not errors, errors
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()


def _detach_twice_at_once(key: str) -> list[object]:
    shm = SharedMemory(key)
    shm.create(1 << 20)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def detach() -> None:
        barrier.wait(WAIT)
        try:
            results.append(shm.detach())
        except Exception as exc:  # noqa: BLE001 - collected and checked by the caller
            results.append(exc)

    threads = [threading.Thread(target=detach, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not shm.is_attached
    return results


def test_detach_from_two_threads_at_once(unique_key) -> None:
    key = unique_key()
    for _ in range(30):
        results = _detach_twice_at_once(key)
        assert sorted(results, key=repr) == [False, True], results
