from ecgllm.data.reference import read_reference


def test_reference_without_header_lf(tmp_path):
    path = tmp_path / "REFERENCE.csv"
    path.write_text("A00001,N\nA00002,A\n")
    assert read_reference(path).labels == {"A00001": "N", "A00002": "A"}


def test_reference_with_header_and_crlf(tmp_path):
    path = tmp_path / "REFERENCE.csv"
    path.write_bytes(b"record,label\r\nA00001,N\r\nA00002,~\r\n\r\n")
    reference = read_reference(path)
    assert reference.labels == {"A00001": "N", "A00002": "~"}
    assert reference.problems == {}


def test_reference_reports_unknown_label_and_duplicate(tmp_path):
    path = tmp_path / "REFERENCE.csv"
    path.write_text("A00001,N\nA00002,X\nA00001,A\nbroken\n")
    reference = read_reference(path)
    assert reference.labels == {"A00001": "N"}
    assert "unknown label 'X'" in reference.problems["A00002"]
    assert "listed twice" in reference.problems["A00001"]
    assert "malformed" in reference.problems["REFERENCE.csv:4"]
