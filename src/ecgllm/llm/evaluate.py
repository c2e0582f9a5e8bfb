"""Evaluating the ECG-LLM: the log-odds of AF by scoring (threshold from validation, on the log-odds), free generation
parsed safely, grounding of the cited numbers, and the paired comparison with Task 1 on the same records. The
threshold is written beside the model's weights as its calibration; P(AF) is written for reading."""

import csv
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgllm.configuration_utils import override
from ecgllm.data.dataset import CinCDataset
from ecgllm.data.split import Split, subset_ids
from ecgllm.evaluation.compare import mcnemar, paired_bootstrap
from ecgllm.evaluation.four_class import CLASSES as FOUR_CLASSES
from ecgllm.evaluation.four_class import (
    choose_checked_offsets,
    compare_four_class,
    decide,
    evaluate_four_class,
    format_four_class,
    four_class_metrics,
    log_probabilities,
)
from ecgllm.evaluation.metrics import binary_metrics, choose_threshold, evaluate_predictions, format_evaluation
from ecgllm.llm.answers import Reading, numbers_grounded, parse_decision, regularity_grounded
from ecgllm.llm.calibration import Calibration, af_probability
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.configuration_ecgllm import LLMEvaluationConfig, preset_evaluation
from ecgllm.llm.data import Example, prepare_examples
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.prompts import DECISION, decision_sentences
from ecgllm.llm.scoring import decision_scores, generate_answers, score_and_answer
from ecgllm.rhythm import IRREGULAR_RR_CV
from ecgllm.utils import resolve_device


def predict(model: ECGLLM, examples: list[Example], batch_size: int, max_new_tokens: int | None = None,
            rule=None, progress: bool = True, desc: str = "ECG-LLM") -> tuple[np.ndarray, list[str]]:
    """The scores of every example (`decision_scores`: log-odds of AF, or log P of each of four classes) and, with
    `max_new_tokens`, its greedily generated answer decided at `rule` (a log-odds threshold: the whole answer decoded
    freely; per-class offsets: the decided sentence, then the answer decoded after it). Under `accelerate launch`
    each process takes its share of the examples, and every process gets all the results back, in order."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    formatter = ChatFormatter(model.tokenizer, model.config)
    sentences = decision_sentences(model.config.lang, model.config.task)
    scores, answers = [], []
    with state.split_between_processes(examples) as mine:  # contiguous shares, in rank order
        for start in tqdm(range(0, len(mine), batch_size), desc=desc, unit="batch",
                          disable=not (progress and state.is_main_process)):
            batch = mine[start:start + batch_size]
            prompts = [e.prompt_ids for e in batch]
            features = torch.stack([e.features for e in batch])
            if max_new_tokens and len(sentences) > 2:
                batch_scores, decided, rest = score_and_answer(model, formatter, prompts, features, rule,
                                                               max_new_tokens, evidence=[e.evidence for e in batch],
                                                               state_rhythm=True)
                answers += [f"{sentences[d]}{text if model.config.lang == 'zh' else ' ' + text}"
                            for d, text in zip(decided, rest)]
            else:
                batch_scores = decision_scores(model, formatter, prompts, features)
                if max_new_tokens:
                    answers += generate_answers(model, formatter, prompts, features, max_new_tokens, rule)
            scores.append(batch_scores)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    if state.num_processes > 1:
        scores, answers = np.concatenate(gather_object([scores])), gather_object(answers)
    return scores, answers


def generation_report(examples: list[Example], answers: list[str], scored: np.ndarray, lang: str,
                      cites_rhythm: bool) -> dict:
    """How the generated answers relate to the labels, to the scoring decision and to the measured rhythm."""
    readings = [parse_decision(a, lang) for a in answers]
    labels = np.array([e.label for e in examples])
    decided = np.array([-1 if r.label is None else r.label for r in readings])
    unparseable = [a for a, r in zip(answers, readings) if r is Reading.UNPARSEABLE]
    report = {
        "n": len(answers),
        "unparseable": len(unparseable),
        "unparseable_examples": unparseable[:10],
        # A hedge ("cannot rule out AF") decides neither way; counted apart, and as a disagreement below.
        "uncertain": sum(r is Reading.UNCERTAIN for r in readings),
        "agreement_with_scoring": float(np.mean(decided == scored)),
        "accuracy_of_generation": float(np.mean(decided == labels)),
        "exact_decision_sentence": float(np.mean([any(a.startswith(d) for d in DECISION[lang]) for a in answers])),
    }
    return {**report, **grounding_report(examples, answers, lang)} if cites_rhythm else report


def grounding_report(examples: list[Example], answers: list[str], lang: str) -> dict:
    """How many answers cite exactly the measured figures, and how many say of the RR intervals what those figures
    show; the first answers that fail either, with the measured figures and regularity."""
    numbers = [numbers_grounded(a, e.evidence) for a, e in zip(answers, examples)]
    words = [regularity_grounded(a, lang, e.evidence) for a, e in zip(answers, examples)]
    return {"numbers_grounded": float(np.mean(numbers)), "regularity_grounded": float(np.mean(words)),
            "ungrounded_examples": [{"record": e.record, "answer": a, "measured": e.evidence.formatted(),
                                     "measured_regularity": e.evidence.regularity}
                                    for a, e, n, w in zip(answers, examples, numbers, words) if not (n and w)][:10]}


def decision_vs_rhythm(examples: list[Example], decided: np.ndarray) -> dict:
    """How often the decision and what the measured RR figures show part ways: AF decided on regular RR intervals,
    or no AF on irregular ones (the evidence sentence states the figures either way; these are the answers whose two
    sentences pull apart)."""
    regularity = [e.evidence.regularity for e in examples]
    af_regular = sum(int(d) == 1 and r == "regular" for d, r in zip(decided, regularity))
    normal_irregular = sum(int(d) == 0 and r == "irregular" for d, r in zip(decided, regularity))
    return {"irregular_from_rr_cv": IRREGULAR_RR_CV, "n": len(examples), "af_with_regular_rr": af_regular,
            "no_af_with_irregular_rr": normal_irregular,
            "rr_not_measurable": regularity.count("not measurable"),
            "share_disagreeing": (af_regular + normal_irregular) / max(len(examples), 1)}


def compare_with_encoder(labels: np.ndarray, ids: list[str], p_llm: np.ndarray, threshold_llm: float,
                         encoder_eval_dir: Path) -> dict:
    """Task 1 vs Task 2 on the same test records, for each Task 1 mode; `p_llm` is any score the LLM decides on at
    `threshold_llm` (its log-odds)."""
    rows = {r["record"]: r for r in csv.DictReader((encoder_eval_dir / "predictions.csv").open())}
    modes = json.loads((encoder_eval_dir / "metrics.json").read_text())["modes"]
    thresholds = {mode: result["threshold"] for mode, result in modes.items()}
    out = {}
    for mode, threshold in thresholds.items():
        p_cnn = np.array([float(rows[i][f"p_af_{mode}"]) for i in ids])
        out[mode] = {
            "mcnemar": mcnemar(labels, p_cnn >= threshold, p_llm >= threshold_llm),
            "f1_difference_llm_minus_cnn": paired_bootstrap(labels, p_cnn, threshold, p_llm, threshold_llm, "f1"),
            "auc_difference_llm_minus_cnn": paired_bootstrap(labels, p_cnn, threshold, p_llm, threshold_llm, "roc_auc"),
            "cnn": evaluate_predictions(labels, p_cnn, threshold, n_resamples=200),
        }
    return out


def evaluate_llm(model: ECGLLM, val_examples: list[Example], test_examples: list[Example], out_dir: str | Path,
                 config: LLMEvaluationConfig | None = None, encoder_eval_dir: Path | None = None,
                 progress: bool = True) -> dict:
    """Threshold on validation, then test metrics, generation report and comparison; writes metrics.json/.txt (the
    main process, when several share the records)."""
    from accelerate import PartialState

    config = config or LLMEvaluationConfig()
    if model.config.task == "four":
        return evaluate_llm_four_class(model, val_examples, test_examples, out_dir, config, encoder_eval_dir, progress)
    generate = config.generate
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    val_labels = np.array([e.label for e in val_examples])
    s_val, _ = predict(model, val_examples, config.batch_size, progress=progress, desc="scoring validation")
    threshold = choose_threshold(val_labels, s_val)  # on the log-odds

    labels = np.array([e.label for e in test_examples])
    s_test, answers = predict(model, test_examples, config.batch_size, config.max_new_tokens if generate else None,
                              threshold, progress, "test")
    scored = (s_test >= threshold).astype(int)
    result = {"system": _system_name(model.config),
              "score": "log-odds",  # thresholds below are on log p(AF sentence) - log p(normal sentence)
              "validation": {"n_records": len(val_labels), "n_positive": int(val_labels.sum()), "threshold": threshold,
                             "threshold_p_af": float(af_probability(threshold)),
                             "metrics": binary_metrics(val_labels, s_val, threshold)},
              "scoring": evaluate_predictions(labels, s_test, threshold),
              "decision_vs_measured_rhythm": decision_vs_rhythm(test_examples, scored)}
    if generate:
        result["generation"] = generation_report(test_examples, answers, scored, model.config.lang,
                                                 model.config.rhythm_prompt)
    ids = [e.record for e in test_examples]
    if encoder_eval_dir is not None and (Path(encoder_eval_dir) / "predictions.csv").exists():
        result["comparison_with_task1"] = compare_with_encoder(labels, ids, s_test, threshold, Path(encoder_eval_dir))
    if not PartialState().is_main_process:
        return result
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (out_dir / "metrics.txt").write_text(format_llm_result(result) + "\n")
    with (out_dir / "validation_predictions.csv").open("w", newline="") as handle:  # where the threshold came from
        csv.writer(handle).writerows([("record", "label", "log_odds", "p_af"),
                                      *((e.record, e.label, f"{s:.6f}", f"{af_probability(s):.6f}")
                                        for e, s in zip(val_examples, s_val))])
    with (out_dir / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record", "label", "log_odds", "p_af", "decision", "answer", "parsed_decision"])
        for i, e in enumerate(test_examples):
            answer = answers[i] if generate else ""
            writer.writerow([e.record, e.label, f"{s_test[i]:.6f}", f"{af_probability(s_test[i]):.6f}", scored[i],
                             answer, "" if not generate else parse_decision(answer, model.config.lang).value])
    return result


def _system_name(config) -> str:
    return (f"ECG-LLM ({config.preset}: {config.lm}, {config.ecg_tokens} ECG tokens, rhythm prompt "
            f"{'on' if config.rhythm_prompt else 'off'}{', rhythm input' if config.rhythm_input else ''}"
            f"{', verdict input' if config.verdict_input else ''}, {config.lang}"
            f"{', four classes' if config.task == 'four' else ''})")


def compare_with_four_class_encoder(labels: np.ndarray, ids: list[str], predicted_llm: np.ndarray,
                                    encoder_eval_dir: Path) -> dict:
    """The four-class MS-CNN (a = CNN) against the ECG-LLM (b) on the same test records, for each MS-CNN mode, each at
    the offsets it chose on validation."""
    rows = {r["record"]: r for r in csv.DictReader((encoder_eval_dir / "predictions.csv").open())}
    modes = json.loads((encoder_eval_dir / "metrics.json").read_text())["modes"]
    out = {}
    for mode, result in modes.items():
        p_cnn = np.array([[float(rows[i][f"p_{c}_{mode}"]) for c in FOUR_CLASSES] for i in ids])
        scores = log_probabilities(p_cnn)
        out[mode] = {"cnn": evaluate_four_class(labels, scores, result["offsets"], n_resamples=200),
                     "llm_minus_cnn": compare_four_class(labels, decide(scores, result["offsets"]), predicted_llm)}
    return out


def evaluate_llm_four_class(model: ECGLLM, val_examples: list[Example], test_examples: list[Example],
                            out_dir: str | Path, config: LLMEvaluationConfig, encoder_eval_dir: Path | None = None,
                            progress: bool = True) -> dict:
    """The four-class model: class offsets chosen on validation (challenge score; kept only if they carry to held-out
    halves of it: `choose_checked_offsets`), then the four-class test report, the answers decoded after the decided
    sentence, and the comparison with the four-class MS-CNN."""
    from accelerate import PartialState

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    val_labels = np.array([e.label for e in val_examples])
    s_val, _ = predict(model, val_examples, config.batch_size, progress=progress, desc="scoring validation")
    rule = choose_checked_offsets(val_labels, s_val, config.offset_check_repeats)
    offsets = rule["offsets"]
    labels = np.array([e.label for e in test_examples])
    s_test, answers = predict(model, test_examples, config.batch_size,
                              config.max_new_tokens if config.generate else None, offsets, progress, "test")
    decided = decide(s_test, offsets)
    result = {"system": _system_name(model.config), "task": "four",
              "score": "log P of each class: a softmax over the four decision sentences' log-likelihoods",
              "validation": {"n_records": len(val_labels),
                             "class_counts": {c: int((val_labels == k).sum()) for k, c in enumerate(FOUR_CLASSES)},
                             "offsets": offsets, "offset_check": rule["check"],
                             "metrics": four_class_metrics(val_labels, decide(s_val, offsets))},
              "scoring": evaluate_four_class(labels, s_test, offsets),
              "decision_vs_measured_rhythm": decision_vs_rhythm(test_examples, decided)}
    if config.generate and model.config.rhythm_prompt:
        result["generation"] = {"n": len(answers), **grounding_report(test_examples, answers, model.config.lang)}
    if encoder_eval_dir is not None and (Path(encoder_eval_dir) / "predictions.csv").exists():
        header = (Path(encoder_eval_dir) / "predictions.csv").open().readline()
        if "p_N_" in header:  # a four-class MS-CNN's predictions
            result["comparison_with_task1"] = compare_with_four_class_encoder(
                labels, [e.record for e in test_examples], decided, Path(encoder_eval_dir))
    if not PartialState().is_main_process:
        return result
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (out_dir / "metrics.txt").write_text(format_llm_result(result) + "\n")
    columns = [f"log_p_{c}" for c in FOUR_CLASSES]
    for name, examples, scores, texts in (("validation_predictions.csv", val_examples, s_val, None),
                                          ("predictions.csv", test_examples, s_test, answers or [""] * len(labels))):
        with (out_dir / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["record", "label", *columns, "decision"] + (["answer"] if texts is not None else []))
            for e, row, decision, *text in zip(examples, scores, decide(scores, offsets), *([texts] if texts else [])):
                writer.writerow([e.record, e.label, *(f"{v:.6f}" for v in row), int(decision), *text])
    return result


def evaluate_model_folder(model_dir: str | Path, dataset: CinCDataset, split: Split, out_dir: str | Path,
                          cache_dir: str | Path, settings: dict | None = None, encoder_eval_dir: Path | None = None,
                          seed: int = 42, progress: bool = True, device: str = "auto") -> dict:
    """Evaluate a trained ECG-LLM folder on `device` (threshold from validation) and write that threshold beside its
    weights. Batch size and answer length are those of the model's preset, unless `settings` (LLMEvaluationConfig
    fields) say otherwise."""
    from accelerate import PartialState

    state = PartialState()  # under `accelerate launch`, one process per device ("auto": its own), each scoring a share
    model = ECGLLM.from_pretrained(model_dir, device=resolve_device(device)).for_inference()
    split.require_task(model.config.task, "this ECG-LLM")
    config = override(preset_evaluation(model.config.preset), settings or {})
    with state.main_process_first():  # one process fills the feature cache, the others read it
        val = prepare_examples(model, dataset, subset_ids(split, "val", config.max_records, seed), cache_dir,
                               progress)
        test = prepare_examples(model, dataset, subset_ids(split, "test", config.max_records, seed), cache_dir,
                                progress)
    result = evaluate_llm(model, val, test, out_dir, config, encoder_eval_dir, progress)
    if not state.is_main_process:
        return result
    v = result["validation"]
    if model.config.task == "four":
        counts = ", ".join(f"{c} {n}" for c, n in v["class_counts"].items())
        gain, kept = v["offset_check"]["held_out_gain"], v["offset_check"]["kept"]
        check = "" if gain is None else f", offsets {'kept' if kept else 'dropped'} (held-out halves {gain:+.4f})"
        Calibration(0.0, f"validation split, {v['n_records']} records ({counts}), challenge score maximised{check}",
                    tuple(v["offsets"])).save(model_dir)
    else:
        Calibration(v["threshold"], f"validation split, {v['n_records']} records ({v['n_positive']} AF), F1 maximised"
                    ).save(model_dir)
    return result


def format_llm_result(result: dict) -> str:
    if result.get("task") == "four":
        return _format_four_class_result(result)
    blocks = [f"{result['system']} on the test split (threshold chosen on validation)",
              format_evaluation("scoring (log-likelihood of the two decision sentences)", result["scoring"])]
    if "validation" in result:
        v = result["validation"]
        blocks.insert(1, f"validation ({v['n_records']} records, {v['n_positive']} AF; the threshold maximises F1 "
                         f"here): F1 {v['metrics']['f1']:.4f}, ROC AUC {v['metrics']['roc_auc']:.4f}, "
                         f"PR AUC {v['metrics']['pr_auc']:.4f}")
    if "generation" in result:
        g = result["generation"]
        lines = [f"generation (greedy): {g['n']} answers, {g['unparseable']} unparseable, "
                 f"{g.get('uncertain', 0)} uncertain",
                 f"  agreement with scoring   {g['agreement_with_scoring']:.4f}",
                 f"  accuracy of generation   {g['accuracy_of_generation']:.4f}",
                 f"  exact decision sentence  {g['exact_decision_sentence']:.4f}"]
        if "numbers_grounded" in g:
            lines.append(f"  numbers grounded         {g['numbers_grounded']:.4f}")
            lines.append(f"  regularity grounded      {g['regularity_grounded']:.4f}")
        blocks.append("\n".join(lines))
    if "decision_vs_measured_rhythm" in result:
        d = result["decision_vs_measured_rhythm"]
        blocks.append(f"decision vs measured rhythm (irregular from RR CV {d['irregular_from_rr_cv']:g}): "
                      f"{d['af_with_regular_rr']} AF on regular RR, {d['no_af_with_irregular_rr']} no AF on "
                      f"irregular RR, {d['rr_not_measurable']} not measurable, of {d['n']} "
                      f"({d['share_disagreeing']:.3f} disagree)")
    for mode, c in result.get("comparison_with_task1", {}).items():
        f1, auc, mc = c["f1_difference_llm_minus_cnn"], c["auc_difference_llm_minus_cnn"], c["mcnemar"]
        cnn = c["cnn"]["metrics"]
        blocks.append(
            f"vs Task 1 MS-CNN ({mode}) on the same records: CNN F1 {cnn['f1']:.4f}, AUC {cnn['roc_auc']:.4f}\n"
            f"  F1 difference (LLM - CNN)  {f1['difference']:+.4f} (95% CI {f1['interval_95'][0]:+.4f} to "
            f"{f1['interval_95'][1]:+.4f})\n"
            f"  AUC difference (LLM - CNN) {auc['difference']:+.4f} (95% CI {auc['interval_95'][0]:+.4f} to "
            f"{auc['interval_95'][1]:+.4f})\n"
            f"  McNemar: only CNN right {mc['only_a_right']}, only LLM right {mc['only_b_right']}, "
            f"p = {mc['p_value']:.4f}")
    return "\n\n".join(blocks)


def _format_four_class_result(result: dict) -> str:
    v = result["validation"]
    check = v.get("offset_check", {})
    check = "" if check.get("held_out_gain") is None else (
        f"; on held-out halves the offsets chosen on the other half gain {check['held_out_gain']:+.4f}, "
        f"so {'they are kept' if check['kept'] else 'none are used'}")
    blocks = [f"{result['system']} on the test split (class offsets chosen on validation)",
              f"validation ({v['n_records']} records; offsets chosen here by the challenge score{check}): "
              f"offsets {' '.join(f'{c} {o:+.2f}' for c, o in zip(FOUR_CLASSES, v['offsets']))}, challenge score "
              f"{v['metrics']['challenge_score']:.4f}",
              format_four_class("scoring (softmax over the four decision sentences)", result["scoring"])]
    if "generation" in result:
        g = result["generation"]
        blocks.append(f"answers: {g['n']}, numbers grounded {g['numbers_grounded']:.4f}, regularity grounded "
                      f"{g['regularity_grounded']:.4f}")
    for mode, c in result.get("comparison_with_task1", {}).items():
        d, ci, mc = c["llm_minus_cnn"]["difference_b_minus_a"], c["llm_minus_cnn"]["intervals_95"], \
            c["llm_minus_cnn"]["mcnemar"]
        cnn = c["cnn"]["four_class"]["metrics"]
        blocks.append(
            f"vs the four-class MS-CNN ({mode}) on the same records: CNN challenge score {cnn['challenge_score']:.4f}, "
            f"AF F1 {c['cnn']['af_vs_rest']['metrics']['f1']:.4f}\n"
            f"  challenge score difference (LLM - CNN) {d['challenge_score']:+.4f} (95% CI "
            f"{ci['challenge_score'][0]:+.4f} to {ci['challenge_score'][1]:+.4f})\n"
            f"  AF F1 difference (LLM - CNN) {d['af_f1']:+.4f} (95% CI {ci['af_f1'][0]:+.4f} to "
            f"{ci['af_f1'][1]:+.4f})\n"
            f"  McNemar (class right): only CNN right {mc['only_a_right']}, only LLM right {mc['only_b_right']}, "
            f"p = {mc['p_value']:.4f}")
    return "\n\n".join(blocks)
