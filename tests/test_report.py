"""`ecgllm report`: a self-contained HTML page on a trained run, opened in a real headless browser."""

import pytest

from ecgllm.cli import main
from ecgllm.errors import CheckpointError
from ecgllm.runs.report import choose_examples, write_report


def test_report_opens_in_browser_with_every_picture(smoke_run, browser, tmp_path):
    out = tmp_path / "report.html"
    assert main(["-q", "report", str(smoke_run), "--out", str(out), "--examples", "1"]) == 0
    text = out.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched from outside

    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(out.as_uri())
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 100])")
    page.close()
    assert errors == []
    alts = [alt for alt, _ in images]
    for title in ("ROC and precision-recall curves", "Confusion matrices at the validated thresholds", "Calibration",
                  "Training curves"):
        assert title in alts
    assert any(alt.startswith("ECG strip of") for alt in alts)  # the run's data folder was found via run.json
    assert all(loaded for _, loaded in images), images
    assert "Task 2 ECG-LLM (scoring)" in text and "McNemar" in text


def test_choose_examples_covers_right_and_wrong():
    rows = [{"record": f"r{i}", "label": label, "decision": decision, "p_af": p}
            for i, (label, decision, p) in enumerate([(1, 1, 0.99), (1, 1, 0.7), (0, 0, 0.01), (0, 1, 0.6),
                                                      (1, 0, 0.2), (1, 0, 0.45)])]
    chosen = choose_examples(rows, per_kind=1)
    assert [(heading, row["record"]) for heading, row in chosen] == [
        ("correct AF (label AF, P(AF) 0.990)", "r0"), ("correct normal (label not AF, P(AF) 0.010)", "r2"),
        ("false alarm (label not AF, P(AF) 0.600)", "r3"), ("missed AF (label AF, P(AF) 0.200)", "r4")]


def test_four_class_examples_are_the_most_confident_right_and_wrong_of_each_class():
    from ecgllm.runs.report import choose_four_class_examples

    def row(name, label, decision, confidence):
        log_p = {c: -5.0 for c in "NAO~"}
        log_p["NAO~"[decision]] = confidence
        return {"record": name, "label": label, "decision": decision, **{f"log_p_{c}": v for c, v in log_p.items()}}

    rows = [row("n1", 0, 0, -0.1), row("n2", 0, 0, -0.5), row("n3", 0, 2, -0.3), row("a1", 1, 1, -0.2),
            row("o1", 2, 1, -0.4), row("o2", 2, 1, -0.05)]
    chosen = [(heading, r["record"]) for heading, r in choose_four_class_examples(rows)]
    assert chosen == [("label N, decided N (right)", "n1"), ("label N, decided O (wrong)", "n3"),
                      ("label A, decided A (right)", "a1"), ("label O, decided A (wrong)", "o2")]


def test_report_on_unfinished_run_names_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match="encoder evaluation"):
        write_report(tmp_path)
