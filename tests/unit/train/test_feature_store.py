"""The frozen tagger's feature store: each distinct window computed once, across instances over one folder."""

import numpy as np

from adaptloop.train.frozen_tagger import FeatureStore


def _compute(calls):
    def compute(ids):
        calls.append([tuple(x) for x in ids])
        return [np.full((len(x), 3), sum(x), dtype=np.float16) for x in ids]
    return compute


def test_windows_are_computed_once_and_read_back_in_order(tmp_path):
    calls = []
    store = FeatureStore(tmp_path, "enc", 4)
    ids = [[1, 2], [3], [1, 2], [4, 5, 6]]
    feats, stored = store.get(ids, _compute(calls))
    assert stored == 0 and calls == [[(1, 2), (3,), (4, 5, 6)]]  # the repeated window once
    assert [f.shape for f in feats] == [(2, 3), (1, 3), (2, 3), (3, 3)] and feats[3][0, 0] == 15

    again = FeatureStore(tmp_path, "enc", 4)  # another process, a resumed run
    feats2, stored = again.get([[4, 5, 6], [7], [3]], _compute(calls))
    assert stored == 2 and calls[-1] == [(7,)]
    assert np.array_equal(feats2[0], feats[3]) and np.array_equal(feats2[2], feats[1]) and feats2[1][0, 0] == 7


def test_another_encoder_or_layer_count_shares_nothing_and_no_folder_keeps_nothing(tmp_path):
    calls = []
    FeatureStore(tmp_path, "enc", 4).get([[1]], _compute(calls))
    assert FeatureStore(tmp_path, "enc", 3).get([[1]], _compute(calls))[1] == 0
    assert FeatureStore(tmp_path, "other", 4).get([[1]], _compute(calls))[1] == 0
    bare = FeatureStore(None, "enc", 4)
    bare.get([[1]], _compute(calls))
    assert bare.get([[1]], _compute(calls))[1] == 0 and len(calls) == 5


def test_a_shard_without_its_index_is_not_read(tmp_path):
    calls = []
    store = FeatureStore(tmp_path, "enc", 4)
    store.get([[1]], _compute(calls))
    for index in tmp_path.rglob("*.index.npz"):
        index.unlink()  # a writer killed between the array and its index
    assert FeatureStore(tmp_path, "enc", 4).get([[1]], _compute(calls))[1] == 0 and len(calls) == 2
