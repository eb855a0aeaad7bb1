"""Performance on delayed labels, label delay, and the estimate before labels arrive.

One instance per model/version/role stream (the streams layer keys them). Inputs are plain
tuples; anything malformed is counted in ``n_ignored`` (or ignored), never raised:

- ``ClassificationPerformance``: ``update((y_true, p))`` once a label arrives; windowed
  ``accuracy``, ``log_loss``, ``auc``.
- ``PrecisionAtK``: ``update((ranked_ids, relevant_ids))``; windowed ``precision_at_k``.
- ``RegressionPerformance``: ``update((y_true, y_pred))``; windowed ``mae`` and ``bias``.
- ``LabelDelay``: ``update(label_at - predicted_at)`` in seconds; recent ``p50``, ``p90``,
  ``p99`` from a bounded logarithmic sketch, and ``sla_breached``.
- ``EstimatedAccuracy``: ``update((None, p))`` per prediction and ``update((y_true, p))``
  per label, ``p`` P(class 1) or every class's probability; ``accuracy`` with ``source``
  "estimated" or "measured", calibration checks.
- ``CalibratedEstimate``: ``update((None, score))`` per prediction and ``update((label,
  score))`` per label, or ``update_many(scores, labels)``; per chunk of predictions the
  ``estimated_*`` accuracy, precision, recall, F1 and ROC AUC at the model's threshold from
  isotonically calibrated scores (CBPE), beside the ``measured_*`` ones on recent labels.
- ``PerformanceDrop``: ``update(loss)`` with a loss in [0, 1]; the e-CUSUM alarm that the
  metrics above embed as ``drift_detected``. Its ``alpha`` bounds false alarms per update
  (mean run length >= 1 / alpha): for a budget per model-day, divide by labels per day.
"""
