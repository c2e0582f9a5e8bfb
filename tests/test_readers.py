"""Reading recordings of every supported format, and a clear error for each kind of bad file."""

import numpy as np
import pytest
import wfdb

from ecgllm.data.readers import read_recording
from ecgllm.data.records import load_cinc_record
from ecgllm.errors import RecordError


def ecg_mv(seconds=10.0, fs=250.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    return (np.sin(2 * np.pi * 1.2 * t) ** 63 * 1.2 + rng.normal(0, 0.02, len(t))).astype(np.float64)


def test_cinc_mat_through_its_header(cinc_dir):
    recording = read_recording(cinc_dir / "A00001.mat")
    reference = load_cinc_record(cinc_dir / "A00001.mat")
    assert recording.fs == 300 and np.allclose(recording.signal, reference.signal, atol=1e-6)


def test_wfdb_multi_lead_csv_npy(tmp_path):
    two = np.stack([ecg_mv(), ecg_mv(seed=1) * 0.5], axis=1)
    wfdb.wrsamp("rec", fs=250, units=["mV", "mV"], sig_name=["II", "V1"], p_signal=two, fmt=["16", "16"],
                write_dir=str(tmp_path))
    with pytest.raises(RecordError, match="2 leads \\(II, V1\\): choose one"):
        read_recording(tmp_path / "rec.hea")
    v1 = read_recording(tmp_path / "rec.hea", lead="V1")
    assert v1.fs == 250 and v1.lead == "V1" and np.allclose(v1.signal, two[:, 1], atol=1e-2)
    assert read_recording(tmp_path / "rec.dat", lead=0).lead == "II"
    with pytest.raises(RecordError, match="disagrees with the header"):
        read_recording(tmp_path / "rec.hea", fs=300, lead="II")

    np.savetxt(tmp_path / "one.csv", ecg_mv(), delimiter=",")
    assert read_recording(tmp_path / "one.csv", fs=250).signal.shape == (2500,)
    (tmp_path / "named.csv").write_text("time,II\n" + "".join(f"{i / 250},{v}\n" for i, v in enumerate(ecg_mv())))
    assert read_recording(tmp_path / "named.csv", fs=250, lead="II").lead == "II"
    np.save(tmp_path / "one.npy", ecg_mv())
    assert read_recording(tmp_path / "one.npy", fs=250).fs == 250
    np.save(tmp_path / "adu.npy", ecg_mv() * 1000)
    assert read_recording(tmp_path / "adu.npy", fs=250, gain=1000).signal.max() < 2


def test_bad_files(tmp_path):
    def fails(path, match, **kwargs):
        with pytest.raises(RecordError, match=match) as caught:
            read_recording(path, **kwargs)
        assert path.name in str(caught.value)

    (tmp_path / "x.edf").write_bytes(b"0")
    fails(tmp_path / "x.edf", "unknown file type")
    (tmp_path / "bad.mat").write_text("not a mat file" * 10)
    fails(tmp_path / "bad.mat", "unreadable")
    (tmp_path / "bad.npy").write_text("nope")
    fails(tmp_path / "bad.npy", "unreadable .npy", fs=250)
    np.save(tmp_path / "ok.npy", ecg_mv())
    fails(tmp_path / "ok.npy", "no sampling rate")
    fails(tmp_path / "ok.npy", "outside 100-10000 Hz", fs=50)
    fails(tmp_path / "ok.npy", "outside 100-10000 Hz", fs=1e6)
    np.save(tmp_path / "short.npy", ecg_mv(seconds=1))
    fails(tmp_path / "short.npy", "too short", fs=250)
    nan = ecg_mv()
    nan[10] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    fails(tmp_path / "nan.npy", "non-finite", fs=250)
    np.save(tmp_path / "flat.npy", np.zeros(5000))
    fails(tmp_path / "flat.npy", "flat line", fs=250)
    np.save(tmp_path / "counts.npy", ecg_mv() * 1000)
    fails(tmp_path / "counts.npy", "raw ADC counts", fs=250)
    np.save(tmp_path / "multi.npy", np.stack([ecg_mv(), ecg_mv(seed=2)]))
    fails(tmp_path / "multi.npy", "2 leads", fs=250)
    wfdb.wrsamp("cut", fs=250, units=["mV"], sig_name=["II"], p_signal=ecg_mv()[:, None], fmt=["16"],
                write_dir=str(tmp_path))
    data = (tmp_path / "cut.dat").read_bytes()
    (tmp_path / "cut.dat").write_bytes(data[: len(data) // 2])  # header says 2500 samples, data holds half
    fails(tmp_path / "cut.hea", "unreadable WFDB record|disagree|samples")


def test_one_plausibility_rule_for_every_format(tmp_path):
    """Samples that cannot be millivolts (an ECG in raw counts, amplitude ~+-800) are refused whatever the format,
    with the reason and the gain to give; with the gain they read."""
    import scipy.io

    counts = np.round(ecg_mv(fs=300) * 700)
    np.savetxt(tmp_path / "counts.csv", counts, delimiter=",")
    np.save(tmp_path / "counts.npy", counts)
    scipy.io.savemat(str(tmp_path / "bare.mat"), {"val": counts[None] * 100}, format="4")
    # WFDB headers whose gain claims the counts are already millivolts
    wfdb.wrsamp("wfdb", fs=300, units=["mV"], sig_name=["II"], p_signal=counts[:, None], fmt=["16"],
                adc_gain=[1.0], baseline=[0], write_dir=str(tmp_path))
    (tmp_path / "cinc").mkdir()
    scipy.io.savemat(str(tmp_path / "cinc" / "A1.mat"), {"val": counts[None].astype(np.int16)}, format="4")
    (tmp_path / "cinc" / "A1.hea").write_text(f"A1 1 300 {len(counts)}\nA1.mat 16+24 1/mV 16 0 0 0 0 II\n")
    for path, settings in [("counts.csv", {"fs": 300}), ("counts.npy", {"fs": 300}), ("bare.mat", {"fs": 300}),
                           ("wfdb.hea", {}), ("cinc/A1.mat", {})]:
        with pytest.raises(RecordError, match=r"not a plausible ECG .*give the gain") as caught:
            read_recording(tmp_path / path, **settings)
        assert (tmp_path / path).name in str(caught.value)
    assert read_recording(tmp_path / "counts.csv", fs=300, gain=700).signal.max() < 2
    assert read_recording(tmp_path / "bare.mat", fs=300, gain=70_000).signal.max() < 2
