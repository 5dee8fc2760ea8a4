"""The batch stage: fit limit, throughput curve, gradient noise scale, goodput, LR rules and
validation on real runs; :class:`BatchStage` in :mod:`.stage`."""
