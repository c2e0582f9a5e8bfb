import numpy as np

from ecgllm.data.records import load_cinc_record
from ecgllm.rhythm import measure_rhythm, rr_statistics


def test_rr_statistics_by_hand():
    regular = rr_statistics(np.full(10, 800.0), 11)
    figures = (regular.heart_rate_bpm, regular.rr_cv, regular.rmssd_ms, regular.prr31, regular.sd1_ms)
    assert figures == (75, 0.0, 0, 0.0, 0)
    alternating = rr_statistics(np.array([600.0, 1000.0] * 5), 11)
    assert alternating.heart_rate_bpm == 75
    assert alternating.rmssd_ms == 400 and alternating.prr31 == 1.0
    assert alternating.rr_cv == round(np.std([600, 1000] * 5, ddof=1) / 800, 2)
    assert not rr_statistics(np.array([800.0, 810.0]), 3).measurable


def test_real_records_normal_and_af(cinc_dir):
    normal = load_cinc_record(cinc_dir / "A00001.mat")  # N, 30 s
    af = load_cinc_record(cinc_dir / "A00005.mat")  # A
    n, a = measure_rhythm(normal.signal, normal.fs), measure_rhythm(af.signal, af.fs)
    assert 70 <= n.heart_rate_bpm <= 90 and 35 <= n.n_beats <= 45
    assert a.rr_cv > 3 * n.rr_cv and a.prr31 > n.prr31
    assert n.formatted()["rr_cv"] == f"{n.rr_cv:.2f}"
