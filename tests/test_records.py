"""Every kind of bad record gets a clear reason naming the record, and nothing else is lost."""

import numpy as np
import pytest

from conftest import synthetic_ecg, write_mat
from ecgllm.data.dataset import check_folder, load_cinc_folder
from ecgllm.data.records import load_cinc_record
from ecgllm.errors import DataFolderError, RecordError


def test_real_record_in_millivolts(cinc_dir):
    record = load_cinc_record(cinc_dir / "A00001.mat")
    assert record.fs == 300 and len(record.signal) == 9000 and record.signal.dtype == np.float32
    assert 0.3 < np.ptp(record.signal) < 5  # millivolts, not adu


def _bad_records(folder):
    """name -> (how to make it, expected words in the reason)."""
    good = synthetic_ecg()
    nan = good.astype(float)
    nan[0, 5] = np.nan
    inf = good.astype(float)
    inf[0, 7] = np.inf
    makers = {
        "B0001": (lambda p: None, "file missing"),
        "B0002": (lambda p: p.write_bytes(write_trunc(folder, good)), "unreadable"),
        "B0003": (lambda p: p.write_text("this is not a MATLAB file at all\n" * 20), "unreadable"),
        "B0004": (lambda p: write_mat(p, signal=good), "no variable 'val'"),
        "B0005": (lambda p: write_mat(p, val=np.vstack([good, good, good])), "multi-lead"),
        "B0006": (lambda p: write_mat(p, val=good[:, :450]), "too short"),
        "B0007": (lambda p: write_mat(p, val=nan), "non-finite"),
        "B0008": (lambda p: write_mat(p, val=inf), "non-finite"),
        "B0009": (lambda p: write_mat(p, val=np.full((1, 3000), 17, np.int16)), "flat line"),
    }
    return makers


def write_trunc(folder, good):
    write_mat(folder / "full.mat", val=good)
    data = (folder / "full.mat").read_bytes()
    (folder / "full.mat").unlink()
    return data[: len(data) // 3]


@pytest.fixture
def mixed_folder(tmp_path):
    makers = _bad_records(tmp_path)
    for name, (make, _) in makers.items():
        make(tmp_path / f"{name}.mat")
    for i in range(3):
        write_mat(tmp_path / f"G000{i}.mat", val=synthetic_ecg(seed=i))
    lines = [f"{name},N" for name in makers] + ["G0000,N", "G0001,A", "G0002,O", "G0003,Q"]
    (tmp_path / "REFERENCE.csv").write_text("\n".join(lines) + "\n")
    return tmp_path, makers


def test_each_bad_record_is_named_with_its_reason(mixed_folder):
    folder, makers = mixed_folder
    for name, (_, expected) in makers.items():
        with pytest.raises(RecordError, match=expected) as caught:
            load_cinc_record(folder / f"{name}.mat")
        assert name in str(caught.value)


def test_folder_goes_on_past_bad_records(mixed_folder):
    folder, makers = mixed_folder
    dataset = check_folder(folder, progress=False)
    assert sorted(dataset.records) == ["G0000", "G0001", "G0002"]
    for name, (_, expected) in makers.items():
        assert expected in dataset.problems[name]
    assert "unknown label 'Q'" in dataset.problems["G0003"]
    report = dataset.report()
    assert "3 usable records" in report and "B0007" in report
    binary = load_cinc_folder(folder, "binary", progress=False)
    assert binary.labels == {"G0000": 0, "G0001": 1} and binary.excluded["O"] == 1


def test_unusable_folders(tmp_path):
    with pytest.raises(DataFolderError, match="no REFERENCE.csv"):
        check_folder(tmp_path, progress=False)
    (tmp_path / "REFERENCE.csv").write_text("")
    with pytest.raises(DataFolderError, match="no usable record"):
        check_folder(tmp_path, progress=False)
    with pytest.raises(DataFolderError, match="no such data folder"):
        check_folder(tmp_path / "absent", progress=False)


def test_cli_check_exit_status(mixed_folder, tmp_path_factory, capsys):
    from ecgllm.cli import main

    folder, _ = mixed_folder
    assert main(["-q", "data", "check", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "B0005: multi-lead" in out
    assert main(["-q", "data", "check", str(tmp_path_factory.mktemp("empty"))]) == 2
    assert "no REFERENCE.csv" in capsys.readouterr().err
