"""The demo under load (issue 26): a real `genzoo demo` process with tiny saved models, sent requests of mixed cost at
once through gradio_client; a cheap request (one GAN pass) is answered while long many-step requests are still
running, not after them."""

import os
import threading
import time

import pytest

from helpers import tiny_pipeline

pytest.importorskip("gradio")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genzoo.demo import ALL_CLASSES, OWN_SOLVER  # noqa: E402

#: the long requests: many DDPM steps on a tiny UNet (seconds each; one model samples one request at a time)
LONG = dict(num_samples=16, steps=400)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_cheap_request_is_not_stuck_behind_expensive_ones(demo_server, tmp_path, request):
    from gradio_client import Client
    from gradio_client.utils import Status

    for family in ("gan", "ddpm"):
        tiny_pipeline(family, "image").save_pretrained(tmp_path / family)
    with demo_server([tmp_path / "gan", tmp_path / "ddpm"], env={**os.environ, "OMP_NUM_THREADS": "1"}) as url:
        client = Client(url, verbose=False)
        request.addfinalizer(client.close)

        def generate(name, num_samples, seed, steps):
            return client.submit(name, num_samples, seed, False, steps, OWN_SOLVER, ALL_CLASSES, "", "", "",
                                 api_name="/generate")

        for name, steps in (("gan", None), ("ddpm", 2)):  # both models loaded before the clock starts
            generate(name, 1, 0, steps).result(timeout=120)
        finished = {}
        lock = threading.Lock()

        def note(key):
            def done(_):
                with lock:
                    finished[key] = time.monotonic()
            return done

        long = [generate("ddpm", LONG["num_samples"], seed, LONG["steps"]) for seed in range(3)]
        deadline = time.monotonic() + 60
        while long[0].status().code not in (Status.PROCESSING, Status.PROGRESS):  # the first long one is sampling
            assert time.monotonic() < deadline, "the first long request did not start within 60 s"
            time.sleep(0.05)
        for i, job in enumerate(long):
            job.add_done_callback(note(f"ddpm {i}"))
        cheap = [generate("gan", 16, seed, None) for seed in range(3)]
        for i, job in enumerate(cheap):
            job.add_done_callback(note(f"gan {i}"))
        answers = [job.result(timeout=180) for job in cheap + long]
        for _, _, what in answers[:3]:
            assert what.startswith("GANPipeline: 16 samples")
        for _, _, what in answers[3:]:
            assert what.startswith(f"DDPMPipeline: 16 samples, {LONG['steps']} steps")
        time.sleep(0.2)  # the callbacks run in the jobs' threads
        first_long = min(finished[f"ddpm {i}"] for i in range(3))
        # every cheap request was answered before even the first long request was done (in a queue of two workers
        # with the second one waiting for the busy DDPM model, they would come after it)
        assert all(finished[f"gan {i}"] < first_long for i in range(3)), finished
