"""Write-lag and label-leak detectors: label-coincident writes, availability gaps, values from the future."""
