"""Forward-pass chunks of similar length: a partition of the inputs, none past the batch size."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from adaptloop.train.encoder import padding_chunks


@given(st.lists(st.integers(0, 300), max_size=200), st.integers(1, 64))
def test_chunks_partition_the_inputs_in_length_order(lengths, max_batch):
    chunks = padding_chunks(lengths, max_batch)
    flat = np.concatenate(chunks).tolist() if chunks else []
    assert sorted(flat) == list(range(len(lengths)))
    assert all(0 < len(c) <= max_batch for c in chunks)
    seen = [lengths[i] for i in flat]
    assert seen == sorted(seen)


def test_a_random_batch_is_cut_where_padding_would_double_it():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, size=32).tolist()
    chunks = padding_chunks(lengths, 64)
    padded = sum(len(c) * max(lengths[i] for i in c) for c in chunks)
    assert len(chunks) > 1
    assert padded <= 1.5 * sum(lengths) + 4 * max(lengths)  # one batch would pad to 32 × the longest
    assert padded < 32 * max(lengths)


def test_equal_lengths_stay_in_full_batches():
    assert [len(c) for c in padding_chunks([12] * 130, 64)] == [64, 64, 2]
