"""Distribution drift: windowed reference-vs-current tests and sequential detectors.

Windowed tests (tumbling windows, one test per full window, frozen or rolling reference):

- numeric: ``KSDrift`` (p-value, ``alpha``), ``WassersteinDrift``, ``PSIDrift`` and
  ``JensenShannonDrift`` (thresholds);
- categorical: ``ChiSquareDrift`` (p-value, ``alpha``) and ``CategoricalPSIDrift``
  (threshold), both with an "unseen" cell for categories absent from the reference;
- missing values: ``NullRateDrift`` (Fisher's exact test, ``alpha``).

A windowed test runs once per ``window_size`` valid events, so a feature seeing ``n``
events a day is tested ``n / window_size`` times a day, and a test at level ``alpha``
spends about ``alpha * n / window_size`` false alarms a day. ``drift_detected`` is True
only on the update that completed a drifted window.

Sequential detectors on scalar streams, all river ``DriftDetector``s:
``RobustCUSUM`` (mean and spread), ``BernoulliCUSUM`` (rate of a binary event) and
``ScalarStreamDrift``, which runs any river detector (ADWIN, PageHinkley, ...) with bad
input filtered out.
"""
