"""Shadow versus live: paired comparison, always-valid sequential test, promotion verdict.

- ``ShadowAgreement``: ``update((live_score, shadow_score))`` per request both scored, no
  label needed; windowed ``agreement``, score deltas, ``spearman``, ``kendall``,
  ``diverged``.
- ``ShadowPromotion``: ``update((event_at, live_loss, shadow_loss))`` per labelled request,
  losses in [0, 1]; a betting confidence sequence on the mean of ``live_loss -
  shadow_loss`` (``lower``, ``upper``) and a ``verdict`` of "promote", "keep_watching" or
  "reject"; promotion also needs ``min_stable_period`` of event time (7 days by default).
"""
