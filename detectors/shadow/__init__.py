"""Shadow versus live: paired comparison, always-valid sequential test, promotion verdict."""
