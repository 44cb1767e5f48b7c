"""ray-job pooled mode: a job's secrets are out of reach of an earlier job's leftovers (issue 9)."""

from __future__ import annotations

import pytest

from raydrive.drivers.ray_job import RayJobExecutor

pytestmark = pytest.mark.ray

KEY = "RD_PROBE_API_TOKEN"  # secret by name


def test_a_thread_left_by_another_submitters_job_never_reads_a_later_jobs_secrets(ray_cluster):
    attacker = RayJobExecutor(ray_address=ray_cluster.address, env={})
    probes = [attacker.submit("tests.actions_secret_probe.LeaveThreadAction", {"key": KEY}) for _ in range(8)]
    probe_pids = {attacker.get_result(job, timeout=120)["pid"] for job in probes}

    victim = RayJobExecutor(ray_address=ray_cluster.address, env={KEY: "hunter2-secret"})
    jobs = [victim.submit("tests.actions_secret_probe.UseSecretAction", {"key": KEY}) for _ in range(3)]
    results = [victim.get_result(job, timeout=120) for job in jobs]
    for result in results:
        assert result["has_secret"] is True  # the action itself gets its secret
        assert result["seen_by_leftover"] is None
        assert result["leftover_threads"] == []
        assert result["pid"] not in probe_pids  # never a process that served the other submitter
    # The victim's jobs share their own pool: one worker start, not one per job.
    assert len({r["pid"] for r in results}) <= 2


def test_params_ray_cannot_serialize_fail_clearly_without_quoting_them(ray_cluster):
    # Ray's serialization error quotes the argument's repr (params and env): never shown.
    import threading

    from raydrive import SubmissionError

    secret = "hunter2-unpicklable-secret"
    executor = RayJobExecutor(ray_address=ray_cluster.address, env={"API_TOKEN": secret})
    with executor, pytest.raises(SubmissionError) as info:
        executor.submit(
            "not_importable_here.Action",
            {"password": secret, "lock": threading.Lock()},
            job_id=f"unpicklable-{threading.get_ident()}",
        )
    assert secret not in str(info.value) and secret not in repr(info.value)
