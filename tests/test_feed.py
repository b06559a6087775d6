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


def _batches_of(feed: Feed, epochs: int = 1) -> list[tuple]:
    with feed.epochs(epochs) as stream:
        return list(stream)


def test_processes_take_their_slice_of_every_global_batch():
    """Two processes of a data-parallel run: each gathers only its half of every global batch,
    and side by side they are the batches one process would train on, in the same order."""
    images, labels = _data()
    whole = _batches_of(Feed(images, labels, batch_size=BATCH, seed=5), 2)
    halves = [
        _batches_of(Feed(images, labels, batch_size=BATCH, seed=5, part=p, parts=2, batch_multiple=2), 2)
        for p in (0, 1)
    ]
    assert len(halves[0]) == len(halves[1]) == len(whole) == 12
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *halves):
        assert len(y0) == len(y1) == BATCH // 2 and not set(y0) & set(y1)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)


def test_a_short_batch_is_padded_with_weightless_rows_and_the_means_stay_exact():
    """50 images in batches of 8 over 4 devices: the last batch of 2 becomes 4 rows, two of
    weight 0, and every real image weighs 52/50, so Keras's weighted mean of a metric and its
    loss (each batch's weighted sum over its rows, averaged over every row) are the plain means."""
    images, labels = _data()
    feed = Feed(images, labels, batch_size=BATCH, shuffle=False, drop_remainder=False, batch_multiple=4)
    batches = _batches_of(feed)
    assert [len(b[1]) for b in batches] == [BATCH] * 6 + [4]
    *_, (last_images, last_ids, last_weights) = batches
    np.testing.assert_array_equal(last_weights, np.float32([52 / 50] * 2 + [0, 0]))
    np.testing.assert_array_equal(last_ids[:2], [48, 49])  # the real ones, then copies
    assert all(np.all(w == np.float32(52 / 50)) for _, _, w in batches[:-1])
    value = lambda ids: np.sin(ids.astype(np.float64))  # noqa: E731  (any per-image number)
    weighted_metric = sum(np.sum(w * value(y)) for _, y, w in batches) / sum(np.sum(w) for _, _, w in batches)
    rows = sum(len(y) for _, y, _ in batches)
    loss = sum(np.sum(w * value(y)) / len(y) * len(y) for _, y, w in batches) / rows
    assert weighted_metric == pytest.approx(np.mean(value(labels)), rel=1e-6)
    assert loss == pytest.approx(np.mean(value(labels)), rel=1e-6)
    # Split between two processes, the padded batch is 2 rows each: the real pair, the padding.
    parts = [
        _batches_of(
            Feed(
                images, labels, batch_size=BATCH, shuffle=False, drop_remainder=False, batch_multiple=4, part=p, parts=2
            )
        )[-1]
        for p in (0, 1)
    ]
    np.testing.assert_array_equal(parts[0][2], np.float32([52 / 50] * 2))
    np.testing.assert_array_equal(parts[1][2], [0, 0])


def test_without_padding_batches_carry_no_weights_and_batch_reads_any_one():
    images, labels = _data(48)
    feed = Feed(images, labels, batch_size=BATCH, shuffle=False, drop_remainder=False, batch_multiple=4)
    batches = _batches_of(feed)
    assert all(len(b) == 2 for b in batches)
    for number, (_, y) in enumerate(batches):
        np.testing.assert_array_equal(feed.batch(number)[1], y)
    with pytest.raises(IndexError):
        feed.batch(len(feed))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"part": 2, "parts": 2, "batch_multiple": 2}, "part=2"),
        ({"part": 0, "parts": 2}, "batch_multiple=1"),  # a global batch of 8 must split 2 ways
        ({"parts": 1, "batch_multiple": 3}, "batch_size=8, batch_multiple=3"),
    ],
)
def test_parts_that_cannot_split_every_batch_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Feed(*_data(), batch_size=BATCH, **kwargs)
