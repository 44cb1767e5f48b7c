"""The shared Ray layer every Ray driver builds on; no driver of its own.

Submitter side: :mod:`.connection` (one connection per process), :mod:`.cluster` (a local
cluster), :mod:`.compat` (the Ray versions raydrive runs on), :mod:`.errors` (Ray's errors as
raydrive's), :mod:`.resources` (what a call asks of the cluster), :mod:`.submission` (an action
made ready to travel), :mod:`.base` (:class:`~raydrive.drivers.ray.base.BaseRayExecutor`),
:mod:`.setup_log` (why a runtime env failed).

Cluster side: :mod:`.worker` (the action actor). Both: :mod:`.wire` (what they exchange).
Importing this package imports nothing.
"""
