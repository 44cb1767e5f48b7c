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


class _InterruptsPickling:
    """A param whose pickling is interrupted, as by Ctrl-C while Ray serializes the batch."""

    def __reduce__(self):
        raise KeyboardInterrupt


def test_a_submission_interrupted_while_sent_fails_clearly_and_never_hangs(ray_cluster):
    import threading

    executor = RayJobExecutor(ray_address=ray_cluster.address)
    with pytest.raises(KeyboardInterrupt):
        executor.submit("not_importable_here.Action", {"x": _InterruptsPickling()})
    # The outbox still answers: a later job goes through, and close() returns.
    job = executor.submit("tests.actions_for_tests.AddAction", {"a": 1})
    assert executor.get_result(job, timeout=60) == {"total": 2}
    closer = threading.Thread(target=executor.close, daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    assert executor._unfinished_jobs() == []  # the interrupted job is not left tracked


def test_jobs_of_an_interrupted_batch_fail_at_lookup_without_their_params(ray_cluster):
    from raydrive import SubmissionError
    from raydrive.drivers.ray_job.outbox import Outbox

    executor = RayJobExecutor(ray_address=ray_cluster.address)
    # The executor's own outbox wiring, on an outbox of the test's.
    outbox = Outbox(send=lambda batch: executor._send("submit_many", batch), receive=executor._receive)
    with pytest.raises(KeyboardInterrupt):
        outbox.put("interrupted-job", {"params": {"secret": "hunter2", "x": _InterruptsPickling()}})
    with pytest.raises(SubmissionError) as info:
        outbox.settle("interrupted-job")
    assert "interrupted" in str(info.value) and "hunter2" not in str(info.value)
    assert outbox.drain(timeout=60)
