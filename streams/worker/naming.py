"""The topics Faust names after the app id (tables' changelogs, the leader topic) also
carry ``FAILSOFT_TOPIC_PREFIX``, like every other topic of failsoft.

Faust names them ``<app id>-<table>-changelog`` and ``<app id>-__assignor-__leader``; the
app id is also the consumer group, which stays unprefixed. The names are the ones
``streams.topics.worker_topics`` gives, so the app creates these topics before it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from faust.assignor.leader_assignor import LeaderAssignor
from faust.tables import Table

from streams.topics import changelog, leader

if TYPE_CHECKING:
    from streams.worker.app import FailsoftApp


class PrefixedTable(Table):
    """A table whose changelog is ``streams.topics.changelog``'s name."""

    def _changelog_topic_name(self) -> str:
        settings = cast("FailsoftApp", self.app).settings
        return changelog(settings, self.name).name(settings)


class PrefixedLeaderAssignor(LeaderAssignor):
    """The leader assignor, on ``streams.topics.leader``'s topic."""

    @property
    def _leader_topic_name(self) -> str:
        settings = cast("FailsoftApp", self.app).settings
        return leader(settings).name(settings)
