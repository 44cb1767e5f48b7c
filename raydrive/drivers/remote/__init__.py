"""Everything that runs on the Ray cluster, one module per role (nothing here runs in the submitter).

- :mod:`.workers`: ray-actor's action actor, ray-job's pooled task and fresh actor per job;
- :mod:`.job_registry`: ray-job's detached job registry (owns every job, keeps outcomes);
- :mod:`.jobs_api_entry`: the entrypoint of a ray-jobs-api job (``python -m``);
- :mod:`.pipeline_actor`, :mod:`.pipeline_runner`, :mod:`.pipeline_cancel`: ray-pipeline's
  detached actor, what it runs, and how it stops on a cancel.

What each receives is defined in :mod:`raydrive.drivers.wire`. Importing this package imports no Ray.
"""
