"""Label sets of the CinC 2017 challenge and the binary AF task."""

CINC_LABELS = ("N", "A", "O", "~")
LABEL_NAMES = {"N": "normal sinus rhythm", "A": "atrial fibrillation", "O": "other rhythm", "~": "too noisy"}

# A task is the ordered tuple of labels it keeps; the index is the class id.
TASKS = {
    "binary": ("N", "A"),  # 0 = normal, 1 = AF: the task of the SPEC
    "four": CINC_LABELS,
}


def task_labels(task: str) -> tuple[str, ...]:
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}") from None
