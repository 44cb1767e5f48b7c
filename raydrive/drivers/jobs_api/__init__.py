"""The ``ray-jobs-api`` driver: actions as Ray Jobs over the dashboard's HTTP API.

- :mod:`.executor`: :class:`RayJobsApiExecutor` (connection and submission);
- :mod:`.tracking`: status, result, attempts, stop, delete and logs of a submitted job;
- :mod:`.attempts`: retries, as a chain of Ray Jobs under derived submission ids;
- :mod:`.client`: the dashboard client (one async implementation, the sync API a thin wrapper);
- :mod:`.sdk`: submission through Ray's ``JobSubmissionClient`` over that client;
- :mod:`.follow`: the log follower; :mod:`.outcome`: the outcome reader;
- :mod:`.wire`: the payload and the outcome, packed and unpacked in one place;
- :mod:`.entry`: what runs on the cluster (the job's entrypoint); :mod:`.cleanup`: ``delete()``'s
  removal of the outcome file.

Nothing is imported here: the job's entry (``python -m raydrive.drivers.remote.jobs_api_entry``) loads
this package first and must stay light.
"""
