import pytest

from ecgllm.cli import main
from ecgllm.data.dataset import check_folder, load_cinc_folder
from ecgllm.data.split import Split, make_fold_split, make_split
from ecgllm.errors import DataFolderError


def test_real_data_check_and_split(cinc_dir, tmp_path, capsys):
    """Acceptance: 8528 usable records; 4340/579/869 with 111 AF in test."""
    assert len(check_folder(cinc_dir, progress=False).records) == 8528
    assert main(["-q", "data", "split", str(cinc_dir), "--out", str(tmp_path / "split.json")]) == 0
    split = Split.load(tmp_path / "split.json")
    assert (len(split.train), len(split.val), len(split.test)) == (4340, 579, 869)
    assert sum(split.labels[i] for i in split.test) == 111
    assert not set(split.train) & set(split.val) | set(split.train) & set(split.test) | set(split.val) & set(split.test)
    assert "test 869 (N 758, A 111)" in capsys.readouterr().out


def test_split_is_reproducible_and_checked(small_cinc, tmp_path):
    labels = load_cinc_folder(small_cinc, progress=False).labels
    first, second = make_split(labels, "binary", seed=7), make_split(labels, "binary", seed=7)
    assert first == second
    assert make_split(labels, "binary", seed=8).test != first.test
    first.save(tmp_path / "s.json")
    assert Split.load(tmp_path / "s.json") == first
    first.check_against(labels)
    changed = dict(labels)
    changed[first.test[0]] = 1 - changed[first.test[0]]
    with pytest.raises(DataFolderError, match="1 with another label"):
        first.check_against(changed)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataFolderError, match="not a split file"):
        Split.load(tmp_path / "bad.json")


def test_folds_test_every_record_once():
    labels = {f"R{i:04d}": int(i % 8 == 0) for i in range(403)}  # 51 of class 1
    splits = [make_fold_split(labels, "binary", 5, fold, seed=3) for fold in range(5)]
    tests = [set(s.test) for s in splits]
    assert set().union(*tests) == set(labels) and sum(map(len, tests)) == len(labels)  # a partition
    for split, test in zip(splits, tests):
        train, val = set(split.train), set(split.val)
        assert not (train & val or train & test or val & test) and len(train | val | test) == len(labels)
        assert len(val) == 41 and abs(sum(labels[i] for i in test) - 51 / 5) <= 1  # stratified
    assert make_fold_split(labels, "binary", 5, 2, seed=3) == splits[2]  # reproducible
    assert make_fold_split(labels, "binary", 5, 2, seed=4).test != splits[2].test
    with pytest.raises(ValueError, match="fold 5"):
        make_fold_split(labels, "binary", 5, 5)


def test_a_fold_split_is_saved_with_its_fold(tmp_path):
    labels = {f"R{i:03d}": int(i % 5 == 0) for i in range(100)}
    split = make_fold_split(labels, "binary", 4, 1)
    split.save(tmp_path / "split.json")
    loaded = Split.load(tmp_path / "split.json")
    assert loaded == split and (loaded.fold, loaded.folds) == (1, 4)


def test_the_four_class_split_keeps_the_binary_split_inside_it(cinc_dir):
    """N/A records keep exactly the binary split's partitions (the 869-record binary test set sits unchanged in the
    four-class test set); O and ~ are split 75/10/15, stratified, with the same seed."""
    from ecgllm.data.labels import CINC_LABELS
    from ecgllm.data.reference import read_reference

    names = read_reference(cinc_dir / "REFERENCE.csv").labels
    four = {record: CINC_LABELS.index(label) for record, label in names.items()}
    binary = {record: c for record, c in four.items() if c in (0, 1)}
    for seed in (42, 7):
        b, f = make_split(binary, "binary", seed), make_split(four, "four", seed)
        for name in ("train", "val", "test"):
            assert [i for i in f.ids(name) if four[i] in (0, 1)] == b.ids(name)
        assert (len(f.train), len(f.val), len(f.test)) == (4340 + 2055, 579 + 274, 869 + 411)
        others = [i for i in f.test if four[i] >= 2]
        assert sum(four[i] == 3 for i in others) == 43  # ~: 284 records, 15 % rounded by stratification
        assert not set(f.train) & set(f.val) | set(f.train) & set(f.test) | set(f.val) & set(f.test)
        assert set(f.train) | set(f.val) | set(f.test) == set(four)
    assert make_split(four, "four", 42).test != make_split(four, "four", 7).test
