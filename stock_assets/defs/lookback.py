"""A lookback dependency that does not widen backfills (docs/decisions.md, "Backfills and lookbacks").

Partition D of a feature, training or serving asset reads its upstream's sessions D-(n-1)..D: a
real dependency, and the run loads exactly that window. Dagster's asset backfill, though, maps a
selected upstream range *downstream* through the same mapping, so selecting `raw_prices` and
`processed_features` over 60 sessions would also target the n-1 feature partitions after the range
(and fail on the prices they need). Here the upstream direction is the lookback and the downstream
direction is the identity: a backfill targets exactly the range selected for each asset.

Only Dagster's built-in mappings are published to the UI and the daemon; they infer the identity
mapping for this edge, which is also what this mapping does downstream, so both views agree on
what a backfill targets.
"""

from __future__ import annotations

from dagster import PartitionMapping, TimeWindowPartitionMapping


class SessionLookback(PartitionMapping):
    def __init__(self, sessions: int) -> None:
        if sessions < 1:
            raise ValueError(f"a lookback spans at least one session, got {sessions}")
        self.sessions = sessions
        self._upstream = TimeWindowPartitionMapping(start_offset=-(sessions - 1))
        self._downstream = TimeWindowPartitionMapping()

    def get_upstream_mapped_partitions_result_for_partitions(self, *args, **kwargs):
        return self._upstream.get_upstream_mapped_partitions_result_for_partitions(*args, **kwargs)

    def get_downstream_partitions_for_partitions(self, *args, **kwargs):
        return self._downstream.get_downstream_partitions_for_partitions(*args, **kwargs)

    def validate_partition_mapping(self, upstream_partitions_def, downstream_partitions_def) -> None:
        self._upstream.validate_partition_mapping(upstream_partitions_def, downstream_partitions_def)

    @property
    def description(self) -> str:
        return f"the {self.sessions} sessions up to and including the partition (backfills target the same range)"

    def __eq__(self, other) -> bool:
        return isinstance(other, SessionLookback) and other.sessions == self.sessions

    def __hash__(self) -> int:
        return hash((SessionLookback, self.sessions))
