"""The TensorFlow-free feed: seeded per-epoch order, every image once, uint8 batches, a
background thread that stays bounded, ends cleanly and hands its errors over, and the time the
consumer waited for input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cifarkit.errors import UsageError
from cifarkit.readers.feed import Feed

COUNT, BATCH = 50, 8


def _data(count: int = COUNT) -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with i % 256 and labelled i, so a batch says which images it holds."""
    ids = np.arange(count)
    images = np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None], (count, 4, 4, 3)).copy()
    return images, ids


def _ids(feed: Feed, epochs: int, **kwargs) -> list[np.ndarray]:
    with feed.epochs(epochs, **kwargs) as stream:
        return [labels for _, labels in stream]


def test_batches_are_uint8_images_with_their_int32_labels():
    images, labels = _data()
    with Feed(images, labels, batch_size=BATCH).epochs(1) as stream:
        batch, ids = next(stream)
    assert batch.dtype == np.uint8 and batch.shape == (BATCH, 4, 4, 3)
    assert ids.dtype == np.int32 and ids.shape == (BATCH,)
    np.testing.assert_array_equal(batch[:, 0, 0, 0], ids % 256)


def test_every_image_comes_once_an_epoch_and_full_batches_leave_out_the_remainder():
    images, labels = _data()
    whole = _ids(Feed(images, labels, batch_size=BATCH, drop_remainder=False), 1)
    assert [len(b) for b in whole] == [BATCH] * 6 + [2]
    np.testing.assert_array_equal(np.sort(np.concatenate(whole)), np.arange(COUNT))
    full = Feed(images, labels, batch_size=BATCH)
    epochs = _ids(full, 2)
    assert len(full) == 6 and [len(b) for b in epochs] == [BATCH] * 12
    for epoch in (epochs[:6], epochs[6:]):
        seen = np.concatenate(epoch)
        assert len(np.unique(seen)) == len(seen) == COUNT - COUNT % BATCH


def test_the_same_seed_gives_the_same_orders_and_every_epoch_its_own():
    images, labels = _data()
    first = np.concatenate(_ids(Feed(images, labels, batch_size=BATCH, seed=3), 2))
    again = np.concatenate(_ids(Feed(images, labels, batch_size=BATCH, seed=3), 2))
    other = np.concatenate(_ids(Feed(images, labels, batch_size=BATCH, seed=4), 2))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[:48], first[48:])  # epoch 1 is not epoch 0 again
    # Resuming at epoch 1 gives exactly what the second epoch of a run from 0 gave.
    resumed = np.concatenate(_ids(Feed(images, labels, batch_size=BATCH, seed=3), 1, first_epoch=1))
    np.testing.assert_array_equal(resumed, first[48:])


def test_without_shuffling_batches_follow_the_dataset_order():
    images, labels = _data()
    ids = _ids(Feed(images, labels, batch_size=BATCH, shuffle=False, drop_remainder=False), 1)
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(COUNT))


class _CountingFeed(Feed):
    """Counts the batches the producer made; optionally slow to make them."""

    def __init__(self, *args, delay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.made, self.delay = 0, delay

    def _batches(self, first_epoch, epochs):
        for batch in super()._batches(first_epoch, epochs):
            time.sleep(self.delay)
            self.made += 1
            yield batch


def test_the_thread_stays_a_bounded_number_of_batches_ahead_and_ends_when_closed_early():
    feed = _CountingFeed(*_data(), batch_size=BATCH, prefetch=2)
    stream = feed.epochs(None)  # endless
    next(stream)
    time.sleep(0.3)
    assert feed.made <= 1 + 2 + 1  # taken, queued, and one in hand waiting for room
    start = time.perf_counter()
    stream.close()
    assert not stream.alive and time.perf_counter() - start < 1.0
    with pytest.raises(StopIteration):
        next(stream)


def test_the_thread_ends_after_the_last_epoch_and_after_leaving_a_with_block():
    images, labels = _data()
    stream = Feed(images, labels, batch_size=BATCH).epochs(1)
    assert len(list(stream)) == 6
    stream._thread.join(timeout=1.0)
    assert not stream.alive
    with Feed(images, labels, batch_size=BATCH).epochs(None) as endless:
        next(endless)
    assert not endless.alive
    assert not [t for t in threading.enumerate() if t.name == "cifarkit-feed"]


def test_waiting_is_measured_when_input_is_slow_and_near_zero_when_it_is_not():
    slow = _CountingFeed(*_data(), batch_size=BATCH, delay=0.05)
    list(slow.epochs(1))
    assert slow.stats.batches == 6 and slow.stats.images == 48
    assert 0.25 < slow.stats.wait_seconds < 1.0  # about 6 x 0.05 s
    fast = _CountingFeed(*_data(), batch_size=BATCH, prefetch=8)
    with fast.epochs(1) as stream:
        time.sleep(0.2)  # the thread fills the queue meanwhile
        list(stream)
    assert fast.stats.wait_seconds < 0.05
    assert fast.stats.share_waiting(0.2) < 0.25


def test_an_error_in_the_thread_reaches_the_consumer():
    class Broken(Feed):
        def _batches(self, first_epoch, epochs):
            yield from super()._batches(first_epoch, 1)
            raise OSError("disk gone")

    stream = Broken(*_data(), batch_size=BATCH).epochs(2)
    with pytest.raises(OSError, match="disk gone"):
        list(stream)
    assert not stream.alive


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 64}, "larger than"),
        ({"batch_size": 8, "prefetch": 0}, "prefetch=0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Feed(*_data(), **kwargs)


def test_a_stream_dropped_without_closing_stops_its_thread():
    import gc

    stream = Feed(*_data(), batch_size=BATCH, prefetch=1).epochs(None)
    next(stream)
    thread = stream._thread
    del stream
    gc.collect()
    thread.join(timeout=1.0)
    assert not thread.is_alive()
