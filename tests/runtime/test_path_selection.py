"""CPU paths chosen by measurement (runtime/model/path_selection.py, path_timing.py).

The rule is tested with injected timings (which candidate wins, the default kept within the
noise margin, unmeasured candidates skipped, forced halves respected); the flags and the
cache file on their own; and once for real: an Engine with selection on times the paths,
writes the cache file, and the next Engine reads it instead of timing again.
"""

from __future__ import annotations

import json

import pytest

from radixlm.runtime.model.path_selection import (
    DEFAULT,
    PathCache,
    PathChoice,
    PathRequest,
    Timings,
    cache_key,
    choose,
    request_from_flags,
)

AUTO = PathRequest().candidates()
COMPILED_PACKED, COMPILED_PLAIN = PathChoice("compiled", "prepacked"), PathChoice("compiled", "plain")
EAGER_PACKED, EAGER_PLAIN = PathChoice("eager", "prepacked"), PathChoice("eager", "plain")
COMPILED_PANELS, EAGER_PANELS = PathChoice("compiled", "panels"), PathChoice("eager", "panels")


def timings(compiled=0.030, eager_packed=0.040, eager_plain=0.040, batch_packed=0.100,
            batch_plain=0.150, eager_panels=None, batch_panels=None) -> Timings:
    one = {"compiled": compiled, "eager+prepacked": eager_packed, "eager+plain": eager_plain,
           "eager+panels": eager_panels}
    batch = {"prepacked": batch_packed, "plain": batch_plain, "panels": batch_panels}
    return Timings({k: v for k, v in one.items() if v is not None},
                   {k: v for k, v in batch.items() if v is not None})


def test_the_default_comes_first_and_wins_where_it_is_fastest():
    assert AUTO[0] == DEFAULT == COMPILED_PACKED
    assert set(AUTO) == {COMPILED_PACKED, COMPILED_PLAIN, EAGER_PACKED, EAGER_PLAIN, COMPILED_PANELS, EAGER_PANELS}
    assert choose(timings(), AUTO) == COMPILED_PACKED  # the AVX2 EPYC's case
    assert choose(timings(eager_panels=0.045, batch_panels=0.105), AUTO) == COMPILED_PACKED


def test_the_panels_win_where_their_batch_step_is_faster_beyond_the_margin():
    # the AMX Xeon's measure: 16-row linears 29 ms in panels vs 34 ms oneDNN, cold weights
    t = timings(compiled=0.027, eager_packed=0.031, eager_plain=0.025, batch_packed=0.047,
                batch_plain=0.062, eager_panels=0.024, batch_panels=0.040)
    assert choose(t, AUTO) == EAGER_PANELS
    assert choose(timings(eager_panels=0.030, batch_panels=0.080), AUTO) == COMPILED_PANELS


def test_the_xeon_of_issue_21_gets_the_eager_plain_path():
    # 16.3 / 18.7 / 20.9 tok/s single stream; prepacking no help at 16 rows either
    t = timings(compiled=1 / 16.3, eager_packed=1 / 18.7, eager_plain=1 / 20.9,
                batch_packed=0.100, batch_plain=0.100)
    assert choose(t, AUTO) == EAGER_PLAIN


def test_compiled_single_stream_with_plain_weights_where_batches_do_not_need_the_pack():
    assert choose(timings(batch_packed=0.150, batch_plain=0.100), AUTO) == COMPILED_PLAIN


def test_eager_weighs_the_single_stream_and_the_batch_together():
    # eager wins the single stream; prepacked loses it by 10% but wins the batch by 50%
    t = timings(compiled=0.050, eager_packed=0.044, eager_plain=0.040,
                batch_packed=0.100, batch_plain=0.150)
    assert choose(t, AUTO) == EAGER_PACKED


def test_within_the_margin_the_default_stays():
    t = timings(compiled=0.0300, eager_plain=0.0295, eager_packed=0.0295, batch_plain=0.100,
                batch_packed=0.100)
    assert choose(t, AUTO) == DEFAULT
    assert choose(t, AUTO, margin=0.0) == EAGER_PACKED  # the first of the two equal fastest


def test_unmeasured_candidates_are_skipped():
    no_compiler = timings(compiled=None)
    assert choose(no_compiler, AUTO) == EAGER_PACKED
    with pytest.raises(ValueError, match="no candidate"):
        choose(timings(compiled=None), [COMPILED_PACKED, COMPILED_PLAIN])


def test_forced_halves_leave_the_other_half_to_choose():
    eager = request_from_flags("auto", "auto", disable_torch_compile=True, disable_weight_prepack=False)
    assert eager == PathRequest("eager", "auto") and eager.candidates() == [EAGER_PACKED, EAGER_PANELS, EAGER_PLAIN]
    assert choose(timings(eager_plain=0.030, batch_plain=0.100), eager.candidates()) == EAGER_PLAIN
    plain = PathRequest("auto", "plain")
    assert plain.fixed() == COMPILED_PLAIN and plain.candidates() == [COMPILED_PLAIN, EAGER_PLAIN]
    assert not PathRequest("compiled", "prepacked").is_auto
    assert PathRequest("compiled", "prepacked").candidates() == [COMPILED_PACKED]


def test_flags_that_contradict_or_do_not_exist_are_errors():
    from radixlm.runtime.server_args import ServerArgs

    with pytest.raises(ValueError, match="contradicts"):
        ServerArgs(cpu_decode="compiled", disable_torch_compile=True)
    with pytest.raises(ValueError, match="contradicts"):
        ServerArgs(cpu_weights="prepacked", disable_weight_prepack=True)
    with pytest.raises(ValueError, match="contradicts"):
        ServerArgs(cpu_weights="panels", disable_weight_prepack=True)
    with pytest.raises(ValueError, match="cpu_decode"):
        ServerArgs(cpu_decode="fast")
    assert ServerArgs(disable_weight_prepack=True).path_request() == PathRequest("auto", "plain")


def test_a_timing_beside_other_processes_is_contended():
    assert not timings().contended  # no share measured
    assert Timings({}, {}, cpu_share=0.9).contended is False
    assert Timings({}, {}, cpu_share=0.3).contended is True


def test_the_cache_round_trips_and_survives_a_bad_file(tmp_path):
    cache = PathCache(tmp_path / "sub")
    assert cache.get("k") is None  # no file yet
    cache.put("k", EAGER_PLAIN, timings())
    cache.put("other", COMPILED_PACKED, timings())
    assert PathCache(tmp_path / "sub").get("k") == EAGER_PLAIN
    entry = json.loads(cache.path.read_text())["k"]
    assert entry["timings"]["one_token"]["compiled"] == 0.030 and "date" in entry
    cache.path.write_text("{not json")
    assert cache.get("k") is None


def test_the_key_names_cpu_threads_model_dtype_and_request(model_folder):
    key = cache_key(model_folder, "torch.float32", 1, PathRequest())
    assert model_folder.name in key and "1 threads" in key and "torch.float32" in key
    assert key != cache_key(model_folder, "torch.float32", 2, PathRequest())
    assert key != cache_key(model_folder, "torch.float32", 1, PathRequest("eager", "auto"))


def test_a_change_of_c_kernel_changes_the_key(model_folder, monkeypatch):
    from radixlm.kernels import cpu_gemm

    key = cache_key(model_folder, "torch.float32", 1, PathRequest())
    monkeypatch.setattr(cpu_gemm._LIBRARY, "source", cpu_gemm._LIBRARY.source + "\n/* a faster kernel */\n")
    assert cache_key(model_folder, "torch.float32", 1, PathRequest()) != key


def _selection_on(monkeypatch, tmp_path, busy_share: float) -> None:
    from radixlm.runtime.model import path_selection, path_timing

    monkeypatch.setenv("RADIXLM_PATH_SELECTION", "on")
    monkeypatch.setenv("RADIXLM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(path_timing, "ROUNDS", 1)  # which path wins is not the question here
    monkeypatch.setattr(path_selection, "BUSY_SHARE", busy_share)


def _times_once_then_reads_the_cache(engine_args: dict, tmp_path, monkeypatch, caplog) -> None:
    from radixlm.runtime import Engine
    from radixlm.runtime.model import runner

    _selection_on(monkeypatch, tmp_path, 0.0)  # cache even beside the suite's other runs
    caplog.set_level("INFO", logger="radixlm.runtime.model.runner")
    with Engine(**engine_args) as engine:
        chosen = engine.scheduler.runner.paths
        model = engine.scheduler.runner.model
        assert (model.compiled_decode is not None) == (chosen.decode == "compiled")
        assert (model.lm_head_packed is not None) == (chosen.weights != "plain")
        assert engine.generate("The capital of France is", {"max_new_tokens": 4})["meta_info"]["completion_tokens"] == 4
    (entry,) = json.loads((tmp_path / "paths.json").read_text()).values()
    assert PathChoice(entry["decode"], entry["weights"]) == chosen
    assert "faster on this CPU" in caplog.text

    def no_timing(*a, **k):
        raise AssertionError("timed again despite the cache")

    monkeypatch.setattr(runner, "time_paths", no_timing)
    caplog.clear()
    with Engine(**engine_args) as engine:
        assert engine.scheduler.runner.paths == chosen
    assert "measured before" in caplog.text


def test_an_engine_times_the_weights_once_then_reads_the_cache(model_folder, tmp_path, monkeypatch, caplog):
    # eager forced: no compile, so this stays quick; the slow test below times all four
    args = dict(model_path=str(model_folder), max_total_tokens=2000, cpu_decode="eager")
    _times_once_then_reads_the_cache(args, tmp_path, monkeypatch, caplog)
    (entry,) = json.loads((tmp_path / "paths.json").read_text()).values()
    assert set(entry["timings"]["one_token"]) == {"eager+prepacked", "eager+panels", "eager+plain"}


@pytest.mark.slow
def test_an_engine_times_every_path_once_then_reads_the_cache(model_folder, tmp_path, monkeypatch, caplog):
    args = dict(model_path=str(model_folder), max_total_tokens=2000)  # a folder: no GGUF conversion
    _times_once_then_reads_the_cache(args, tmp_path, monkeypatch, caplog)
    (entry,) = json.loads((tmp_path / "paths.json").read_text()).values()
    assert set(entry["timings"]["one_token"]) == {"compiled", "eager+prepacked", "eager+panels", "eager+plain"}


def test_a_contended_timing_keeps_the_default_and_caches_nothing(model_folder, tmp_path, monkeypatch, caplog):
    from radixlm.runtime import Engine

    _selection_on(monkeypatch, tmp_path, 1.01)  # every timing counts as contended
    with Engine(model_path=str(model_folder), max_total_tokens=2000, cpu_decode="eager") as engine:
        assert engine.scheduler.runner.paths == PathRequest("eager").fixed() == EAGER_PACKED
    assert not (tmp_path / "paths.json").exists()
    assert "not chosen by it nor cached" in caplog.text
