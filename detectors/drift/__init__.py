"""Distribution drift: windowed reference-vs-current tests and sequential detectors."""
