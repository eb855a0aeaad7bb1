"""Performance on delayed labels, label delay, and the estimate before labels arrive."""
