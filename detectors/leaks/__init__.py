"""Write-lag and label-leak detectors.

Label-coincident writes, availability gaps, write lag, and values from the future.
The event records the detectors read are re-exported here; the detectors themselves are
re-exported from ``detectors``.
"""

from detectors.leaks.events import FeatureWrite, Label, ServedFeature

__all__ = ["FeatureWrite", "Label", "ServedFeature"]
