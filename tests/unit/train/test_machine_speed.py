"""Encoder speeds: measured for real on MiniLM, cached per machine, an unloadable encoder left out."""

from __future__ import annotations

import json
import time

import pytest

from adaptloop.train import machine_speed
from adaptloop.train.encoder import DEFAULT_ENCODER, load_base
from adaptloop.train.machine_speed import EncoderSpeed, encoder_speeds, padded_tokens

TEXTS = ["my card has not arrived yet", "how do I top up by bank transfer?",
         "I was charged twice for the same coffee this morning, please refund one of them", "cancel it"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLOOP_CACHE", str(tmp_path))
    return tmp_path / "speeds.json"


def test_minilm_is_measured_once_then_read_from_the_cache(cache, monkeypatch):
    _, shared = load_base(DEFAULT_ENCODER)
    before = next(shared.parameters()).detach().clone()
    got = encoder_speeds([DEFAULT_ENCODER], TEXTS, threads=1)[DEFAULT_ENCODER]
    assert got.tokens_per_second > 0 and got.step_seconds_per_token > 0 and got.step_seconds_fixed >= 0
    assert "1 threads" in got.key and 0 < got.cpu_share <= 1.5
    assert got.others is None or got.others >= 0  # None where /proc/stat is not there
    assert (next(shared.parameters()) == before).all()  # the training steps ran on a copy
    assert json.loads(cache.read_text())[f"{got.key}|{DEFAULT_ENCODER}"]["encoder"] == DEFAULT_ENCODER

    def never(*_a, **_k):
        raise AssertionError("measured again although the cache holds it")

    monkeypatch.setattr(machine_speed, "measure", never)
    assert encoder_speeds([DEFAULT_ENCODER], TEXTS, threads=1)[DEFAULT_ENCODER] == got


def test_a_measurement_taken_beside_busy_processes_serves_its_run_but_is_not_cached(cache, monkeypatch):
    busy = EncoderSpeed(DEFAULT_ENCODER, 900.0, 0.002, 0.4, key="k", cpu_share=0.99, others=1.0, contended=True)
    calm = EncoderSpeed(DEFAULT_ENCODER, 5000.0, 0.0005, 0.1, key="k", cpu_share=0.98, others=0.02)
    timings = iter([busy, calm])
    monkeypatch.setattr(machine_speed, "measure", lambda *_a, **_k: next(timings))
    assert encoder_speeds([DEFAULT_ENCODER], TEXTS, threads=1)[DEFAULT_ENCODER] == busy  # what the machine does now
    assert not cache.exists()
    assert encoder_speeds([DEFAULT_ENCODER], TEXTS, threads=1)[DEFAULT_ENCODER] == calm  # measured again
    assert encoder_speeds([DEFAULT_ENCODER], TEXTS, threads=1)[DEFAULT_ENCODER] == calm  # from the cache now


def test_a_cached_speed_from_before_the_contention_check_is_measured_again(cache, monkeypatch):
    key = machine_speed.machine_key("cpu", 1)
    old = {"encoder": DEFAULT_ENCODER, "key": key, "tokens_per_second": 1.0, "step_seconds_per_token": 1.0,
           "step_seconds_fixed": 1.0}  # no cpu_share: it may have been timed beside other work
    cache.write_text(json.dumps({f"{key}|{DEFAULT_ENCODER}": old}))
    fresh = EncoderSpeed(DEFAULT_ENCODER, 5000.0, 0.0005, 0.1, key=key, cpu_share=0.98)
    monkeypatch.setattr(machine_speed, "measure", lambda *_a, **_k: fresh)
    assert encoder_speeds([DEFAULT_ENCODER], TEXTS, threads=1)[DEFAULT_ENCODER] == fresh
    assert json.loads(cache.read_text())[f"{key}|{DEFAULT_ENCODER}"]["cpu_share"] == 0.98


def test_contended_means_other_processes_took_cores_the_threads_needed(monkeypatch):
    monkeypatch.setattr(machine_speed.os, "cpu_count", lambda: 2)
    assert machine_speed.contended(0.99, 1.0, threads=2)  # one of the two cores taken
    assert not machine_speed.contended(0.99, 0.05, threads=2)  # daemons
    assert not machine_speed.contended(0.99, 1.0, threads=1)  # the core the one thread left free
    assert machine_speed.contended(0.5, 1.8, threads=1)
    # where the machine's CPU time is not known, this process's share of its threads decides
    assert machine_speed.contended(0.45, None, threads=2) and not machine_speed.contended(0.95, None, threads=2)


@pytest.mark.skipif(machine_speed._busy_seconds() is None, reason="no /proc/stat here")
def test_the_clock_sees_another_process_spinning_beside_what_it_times():
    """Real: a second interpreter spins while the clock times a sleep; its CPU time is another's."""
    import subprocess
    import sys

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started
        clock = machine_speed.Clock()
        clock(lambda: time.sleep(1.0))
    finally:
        spinner.kill()
        spinner.wait()
    assert clock.share(1) < 0.1 and clock.others() > 0.6, (clock.share(1), clock.others())
    idle = machine_speed.Clock()
    idle(lambda: time.sleep(0.5))
    assert idle.others() < clock.others()


def test_an_encoder_that_does_not_load_is_left_out(cache, tmp_path):
    assert encoder_speeds([str(tmp_path / "no-such-encoder")], TEXTS, threads=1) == {}
    assert not cache.exists()


def test_rates_scale_with_the_tasks_text_length():
    s = EncoderSpeed("e", tokens_per_second=1000.0, step_seconds_per_token=0.001)
    assert s.texts_per_second(20) == 50.0
    assert s.step_seconds(32, 10) == pytest.approx(0.32)
    with_update = EncoderSpeed("e", tokens_per_second=1000.0, step_seconds_per_token=0.001, step_seconds_fixed=0.2)
    assert with_update.step_seconds(32, 10) == pytest.approx(0.52)
    short, long = padded_tokens(DEFAULT_ENCODER, TEXTS[:2]), padded_tokens(DEFAULT_ENCODER, [TEXTS[2]] * 2)
    assert 3 < short < long
