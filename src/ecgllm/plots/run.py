"""Pictures of a trained run: ROC and PR curves, confusion matrices, training losses, calibration."""

from pathlib import Path

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ecgllm.plots import new_figure, save_png

# A system on the test records: its name -> (labels, P(AF), threshold).
Systems = dict[str, tuple[np.ndarray, np.ndarray, float]]


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    return save_png(fig, Path(path))


def plot_roc_pr(systems: Systems, path: str | Path) -> Path:
    """ROC and precision-recall curves of every system on the same axes, each with its operating point."""
    fig = new_figure(9, 4)
    roc, pr = fig.subplots(1, 2)
    for name, (labels, p, threshold) in systems.items():
        fpr, tpr, _ = roc_curve(labels, p)
        line, = roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, p):.3f})", linewidth=1.2)
        predicted = p >= threshold
        roc.plot(np.mean(predicted[labels == 0]), np.mean(predicted[labels == 1]), "o", color=line.get_color())
        precision, recall, _ = precision_recall_curve(labels, p)
        pr.plot(recall, precision, label=f"{name} (AP {average_precision_score(labels, p):.3f})", linewidth=1.2,
                color=line.get_color())
        if predicted.any():
            pr.plot(np.mean(predicted[labels == 1]), np.mean(labels[predicted] == 1), "o", color=line.get_color())
    roc.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.6)
    roc.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (dot: validated threshold)")
    pr.set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    roc.legend(fontsize=7, loc="lower right")
    pr.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_confusion_matrices(systems: Systems, path: str | Path) -> Path:
    fig = new_figure(3.2 * len(systems), 3.2)
    axes = fig.subplots(1, len(systems), squeeze=False)
    for ax, (name, (labels, p, threshold)) in zip(axes[0], systems.items()):
        ConfusionMatrixDisplay.from_predictions(labels, (p >= threshold).astype(int), labels=[0, 1],
                                                display_labels=["N", "AF"], ax=ax, colorbar=False, cmap="Blues")
        ax.set_title(name, fontsize=8)
    return _save(fig, path)


def plot_calibration(systems: Systems, path: str | Path, bins: int = 10) -> Path:
    """Reliability diagram: observed share of AF per bin of predicted P(AF) (quantile bins: AF is rare)."""
    fig = new_figure(4.5, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.6, label="perfect")
    for name, (labels, p, _) in systems.items():
        observed, predicted = calibration_curve(labels, p, n_bins=bins, strategy="quantile")
        ax.plot(predicted, observed, "o-", markersize=3, linewidth=1, label=name)
    ax.set(xlabel="predicted P(AF)", ylabel="observed share of AF", title="Calibration")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_training_curves(encoder_history: list[dict], llm_log: list[dict], path: str | Path) -> Path:
    """Encoder: training loss and validation PR AUC per epoch. LLM: loss per optimiser step (and its running mean)."""
    fig = new_figure(9, 3.4)
    enc, llm = fig.subplots(1, 2)
    if encoder_history:
        epochs = [int(r["epoch"]) for r in encoder_history]
        enc.plot(epochs, [float(r["train_loss"]) for r in encoder_history], "o-", markersize=3, label="train loss")
        enc.plot(epochs, [float(r["val_pr_auc"]) for r in encoder_history], "s-", markersize=3, label="val PR AUC")
        enc.legend(fontsize=7)
    enc.set(xlabel="epoch", title="Task 1: MS-CNN")
    if llm_log:  # one row per micro-batch: average them per optimiser step
        steps, index = np.unique([int(r["step"]) for r in llm_log], return_inverse=True)
        loss = np.bincount(index, weights=[float(r["loss"]) for r in llm_log]) / np.bincount(index)
        llm.plot(steps, loss, linewidth=0.5, alpha=0.5, label="loss")
        window = max(1, len(loss) // 20)
        llm.plot(steps[window - 1:], np.convolve(loss, np.ones(window) / window, mode="valid"), linewidth=1.4,
                 label=f"trailing mean ({window} steps)")
        llm.set_yscale("log")
        llm.legend(fontsize=7)
    llm.set(xlabel="optimiser step", title="Task 2: ECG-LLM (projector + LoRA)")
    return _save(fig, path)
