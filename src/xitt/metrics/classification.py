"""Sentence classification: macro-F1 and accuracy from gold and predicted class indices."""

import numpy as np


def macro_f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 (0-100) of confusion matrices shaped (..., K, K): rows gold, columns predicted.

    Averages over the classes that occur as gold label or as prediction (scikit-learn's
    default), so a class that a small resample happens to miss is neither scored 0 nor
    divided by zero.
    """
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1)
    # 2 TP + FP + FN = (number of gold labels of the class) + (number of predictions of it)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    present = denominator > 0
    per_class = np.divide(2.0 * true_positives, denominator, out=np.zeros(denominator.shape), where=present)
    return 100.0 * per_class.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 (0-100) of one system on one test set."""
    cells = np.asarray(gold, dtype=np.int64) * n_classes + np.asarray(pred, dtype=np.int64)
    confusion = np.bincount(cells, minlength=n_classes * n_classes)
    return float(macro_f1_from_confusion(confusion.reshape(n_classes, n_classes)))


def classification_scores(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """The scores a classification record carries: macro-F1 and accuracy (0-100), n."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    accuracy = 100.0 * float((gold == pred).mean()) if len(gold) else 0.0
    return {"f1": macro_f1(gold, pred, n_classes), "accuracy": accuracy, "n": int(len(gold))}
