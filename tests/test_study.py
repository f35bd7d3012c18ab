"""The Fashion-MNIST study (``benchmarks/bench_study.py`` and ``benchmarks/study/``): both plans,
the checks every record passes before it counts, the report, the cycle-length curve and its plot."""
import json
import os
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from study import plan as study_plan  # noqa: E402
from study import records as study_records  # noqa: E402
from study import report as study_report  # noqa: E402
from study.plan import Spec  # noqa: E402

STEPS_PER_EPOCH = 429  # 55,000 training images in batches of 128


def make_record(spec: Spec, accuracy: float, speed: float = 100.0, cpu_share: float = 1.0) -> dict:
    """A record as ``record_of`` writes it, consistent with ``spec``."""
    config = {"model": spec.network, "method": spec.method, "seed": spec.seed, "epochs": spec.epochs,
              "sparsity": spec.sparsity, "block_size": [spec.block, spec.block], "sup_tickets": spec.boost,
              "cycles": spec.cycle_count, "ticket_trace": spec.boost, "base_ticket": True}
    trace, tickets = None, []
    if spec.boost:
        m, c = spec.cycle_count, spec.cycle_steps(STEPS_PER_EPOCH)
        total = spec.epochs * STEPS_PER_EPOCH
        tickets = [total - (m - k) * c for k in range(m + 1)]
        event = {"val": {"accuracy": accuracy - 0.01}, "test": {"accuracy": accuracy - 0.02}}
        events = [{"event": "ticket", "index": 0, **event}]
        for k in range(1, m + 1):
            events += [{"event": "explored", **event}, {"event": "ticket", "index": k, **event}]
        trace = {"events": events, "ultimate": event, "ensemble": event, "final": event}
    summary = {"test_accuracy": accuracy, "validation": {"accuracy": accuracy + 0.01}, "ece": 0.02, "nll": 0.3,
               "flops_train": 0.1 if spec.method != "dense" else 1.0, "ticket_trace": trace, "tickets": tickets}
    epochs = [{"epoch": e + 1, "images_per_s": speed, "epoch_time_s": 10.0, "cpu_time_s": 10.0 * cpu_share}
              for e in range(spec.epochs)]
    return {"key": spec.key, "spec": {k: getattr(spec, k) for k in ("network", "method", "sparsity", "block", "boost",
                                                                     "seed", "variant", "epochs", "cycles")},
            "config": config, "summary": summary, "epochs": epochs, "images_per_s": speed, "train_seconds": 100.0,
            "wall_seconds": 60.0, "git": "0123456789abcdef", "cpu": "test CPU", "finished": "2026-01-01T00:00:00Z"}


def write(folder, record, name=None):
    (folder / (name or record["key"] + ".json")).write_text(json.dumps(record))


# ---- the plans -----------------------------------------------------------------------------------

def _seeds_by_row(specs) -> dict:
    """The plan's seeds of each row; its keys are checked unique on the way."""
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    rows: dict = {}
    for s in specs:
        rows.setdefault(s.row, set()).add(s.seed)
    return rows


def test_short_plan_pairs_every_booster_run_with_its_base_run():
    specs = study_plan.plan()
    rows = _seeds_by_row(specs)
    keys = [s.key for s in specs]
    for s in specs:
        want = 5 if (s.block == 1 and s.method in ("rigl", "set")) else 3
        assert len(rows[s.row]) >= want, s.row
        if s.boost:
            assert rows[s.row] <= rows[s.base_row], s.row
    assert keys[0] == "mlp3x1000-dense-s0" and "mlp3x1000-rigl-sup-90-b1-long-cycles-s4" in keys  # keys as recorded


def test_long_plan_lines_in_order_with_their_cycle_lengths():
    specs = study_plan.long_plan()
    rows = _seeds_by_row(specs)
    for s in specs:
        if s.boost:
            assert rows[s.row] <= rows[s.base_row]
    booster = {(s.network, s.method, s.sparsity, s.block, s.epochs, s.cycle_count): s.cycle_steps(STEPS_PER_EPOCH)
               for s in specs if s.boost}
    assert booster[("mlp3x1000", "rigl", 0.9, 8, 100, 3)] == 1430
    assert [booster[("mlp3x1000", "rigl", 0.9, 8, 100, m)] for m in (1, 2, 5, 10, 15, 30)] == [
        4290, 2145, 858, 429, 286, 143]
    assert booster[("mlp3x1000", "rigl", 0.9, 8, 200, 3)] == 2860
    assert ("mlp3x1000", "rigl", 0.95, 1, 100, 3) in booster and ("cnn2", "rigl", 0.95, 1, 100, 3) in booster
    for row, seeds in rows.items():
        assert len(seeds) == (3 if row[1] == "dense" or row[7] in (1, 2, 5, 10, 15, 30) else 5), row
    # each line before the next: a (100-epoch pairs, then dense), b, c, d, e, f, g
    first = {name: next(i for i, s in enumerate(specs) if test(s)) for name, test in {
        "b": lambda s: s.cycles == 10, "c": lambda s: s.epochs == 200, "d": lambda s: s.sparsity == 0.95,
        "e": lambda s: s.network == "cnn2", "f": lambda s: s.method == "granet",
        "g": lambda s: s.variant == "explore0.2"}.items()}
    assert first["b"] < first["c"] < first["d"] < first["e"] < first["f"] < first["g"]
    assert all(s.method == "granet" and s.boost for s in specs[first["g"]:])
    assert all(s.epochs == 100 and s.block == 8 for s in specs[:first["b"]] if s.method != "dense")


def test_commands_of_a_long_run_and_of_its_resume(tmp_path):
    spec = Spec("mlp3x1000", "rigl", 0.9, 8, True, 2, epochs=200, cycles=5)
    cmd = study_plan.command(spec, "fashion-mnist", str(tmp_path))
    assert cmd[cmd.index("--epochs") + 1] == "200" and cmd[cmd.index("--cycles") + 1] == "5"
    assert cmd[cmd.index("--block-size") + 1] == "8" and "--ticket-trace" in cmd and "--sup-tickets" in cmd
    base = study_plan.command(Spec("mlp3x1000", "rigl", 0.9, 8, False, 2, epochs=200), "fashion-mnist", str(tmp_path))
    assert "--cycles" not in base and "--no-sup-tickets" in base
    assert "--epochs" not in study_plan.command(Spec("cnn2", "dense", 0.0, 1, False, 0), "fashion-mnist", "x")
    (tmp_path / "config.json").write_text("{}")
    assert study_plan.command(spec, "fashion-mnist", str(tmp_path))[-5:] == ["--resume", str(tmp_path), "--quiet",
                                                                              "--threads", "1"]


# ---- records: checked before they count ------------------------------------------------------------

def test_committed_records_pass_the_checks():
    for plan, folder in (("short", "fashion-mnist"), ("long", "fashion-mnist-long")):
        path = os.path.join(ROOT, "results", folder)
        records = study_records.load_records(path, study_plan.PLANS[plan]())
        if plan == "short":
            assert len(records) == len(study_plan.plan())


def _bad(tmp_path, record=None, name=None, text=None):
    spec = Spec("mlp3x1000", "rigl", 0.9, 8, True, 0, epochs=100, cycles=3)
    good = make_record(spec, 0.9)
    if text is not None:
        (tmp_path / (name or good["key"] + ".json")).write_text(text)
    else:
        write(tmp_path, record(good) if record else good, name or good["key"] + ".json")
    with pytest.raises(study_records.RecordError) as info:
        study_records.load_records(str(tmp_path), study_plan.long_plan())
    return str(info.value)


@pytest.mark.parametrize("change, match", [
    (lambda r: {**r, "summary": {**r["summary"], "test_accuracy": float("nan")}}, "NaN is not a JSON number"),
    (lambda r: {**r, "summary": {**r["summary"], "test_accuracy": 1.7}}, r"test_accuracy must be in \[0.0, 1.0\]"),
    (lambda r: {**r, "summary": {**r["summary"], "nll": "low"}}, "summary.nll must be int or float"),
    (lambda r: {**r, "spec": {**r["spec"], "network": "resnet50"}}, "not a run of this study"),
    (lambda r: {**r, "config": {**r["config"], "cycles": 5}}, "its run used cycles = 5, its spec says 3"),
    (lambda r: {**r, "config": {**r["config"], "epochs": 10}}, "its run used epochs = 10"),
    (lambda r: {**r, "key": "mlp3x1000-rigl-sup-90-b8-e100-m3-s1"}, "is not the key of its spec"),
    (lambda r: {**r, "epochs": r["epochs"][:40]}, "it has 40 epochs of metrics"),
    (lambda r: {k: v for k, v in r.items() if k != "summary"}, "record has no 'summary'"),
    (lambda r: {**r, "summary": {**r["summary"], "ticket_trace": None}}, "has no ticket_trace"),
    (lambda r: [r], "a record is a JSON object"),
])
def test_a_bad_record_is_named_in_one_line(tmp_path, change, match):
    text = _bad(tmp_path, change)
    assert "\n" not in text and "mlp3x1000-rigl-sup-90-b8-e100-m3-s0.json: not a study record" in text
    assert __import__("re").search(match, text), text


def test_truncated_foreign_and_misplaced_records(tmp_path):
    assert "not valid JSON at line 1" in _bad(tmp_path, text='{"key": "mlp3x1000-rigl-sup-90-b8-e100-m3-s0", "spec"')
    for f in tmp_path.iterdir():
        f.unlink()
    # a hand-made copy of a real run under another name cannot stand in for it
    assert "which belongs in mlp3x1000-rigl-sup-90-b8-e100-m3-s0.json" in _bad(tmp_path, name="better.json")
    for f in tmp_path.iterdir():
        f.unlink()
    # a consistent record of a run the plan does not have
    spec = Spec("mlp3x1000", "rigl", 0.9, 8, True, 7, epochs=100, cycles=3)
    write(tmp_path, make_record(spec, 0.9))
    with pytest.raises(study_records.RecordError, match="is not in this plan"):
        study_records.load_records(str(tmp_path), study_plan.long_plan())


def test_the_command_line_names_a_bad_record_in_one_line(tmp_path):
    (tmp_path / "mlp3x1000-dense-e100-s0.json").write_text('{"key": ')
    for flag in ("--report", "--list"):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_study.py"), "--plan", "long",
                               flag, "--results", str(tmp_path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "mlp3x1000-dense-e100-s0.json" in proc.stderr


def test_speed_counts_only_undisturbed_epochs():
    spec = Spec("mlp3x1000", "dense", 0.0, 1, False, 0, epochs=100)
    record = make_record(spec, 0.9, speed=100.0)
    for e in record["epochs"][:30]:  # 30 epochs beside other work: slower and short of a core
        e.update(images_per_s=50.0, cpu_time_s=6.0)
    assert study_records.run_speed(record) == pytest.approx(100.0)
    for e in record["epochs"][:60]:
        e.update(images_per_s=50.0, cpu_time_s=6.0)
    assert study_records.run_speed(record) is None  # mostly disturbed: no speed
    for e in record["epochs"]:
        e.pop("cpu_time_s")
    assert study_records.run_speed(record) == record["images_per_s"]  # an older record: every epoch counts


# ---- the report and the curve --------------------------------------------------------------------

def test_report_of_records(tmp_path):
    specs = study_plan.long_plan(("mlp3x1000",))
    base = {s: 0.85 + 0.01 * s for s in range(5)}
    gain = [0.004, 0.001, 0.006, -0.002, 0.003]
    chosen = [s for s in specs if s.row[:4] == ("mlp3x1000", "rigl", 0.9, 8) and s.epochs == 100
              and s.cycles in (None, 3)] + [s for s in specs if s.method == "dense"]
    for s in chosen:
        acc = 0.9 if s.method == "dense" else base[s.seed] + (gain[s.seed] if s.boost else 0.0)
        write(tmp_path, make_record(s, acc, speed=100.0 if s.method == "dense" else 250.0,
                                    cpu_share=0.5 if s.key.endswith("dense-e100-s2") else 1.0))
    text = study_report.report(study_records.load_records(str(tmp_path), specs), specs)
    diffs = [100 * g for g in gain]
    m, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = 2.776 * sd / 5 ** 0.5  # t(0.975, 4)
    line = next(x for x in text.splitlines() if x.startswith("| RigL + Sup-tickets, 90 %, 8x8, 100 epochs, M = 3 |"))
    assert f"| {m:+.2f} [{m - half:+.2f}, {m + half:+.2f}] (n=5) |" in line
    assert "| 5 |" in line and "| 250 | 2.50× |" in line
    assert "| dense, 100 epochs | 3 | 91.00 ± 0.00 | 90.00 ± 0.00 |" in text
    assert "| dense, 100 epochs | 0123456 | test CPU | s2 |" in text  # provenance: the disturbed dense run
    assert "| booster run | split | ticket 0 | after expl. 1 | ticket 1 | after expl. 2 | ticket 2 " in text
    tickets = study_report.mean_std([base[s] + gain[s] - 0.02 for s in range(5)])  # every ticket's test accuracy
    assert f"| RigL + Sup-tickets, 90 %, 8x8, 100 epochs, M = 3 | test | {tickets} | {tickets} |" in text
    try:
        from scipy import stats
        assert stats.t.ppf(0.975, 4) == pytest.approx(2.776, abs=1e-3)
    except ImportError:
        pass


def test_cycle_length_curve_and_its_threshold(tmp_path):
    records = {}
    deltas = {1: [0.004, 0.006, 0.005], 2: [0.003, 0.001, 0.004], 3: [0.002, -0.001, 0.001, 0.0, 0.002],
              5: [-0.003, -0.004, -0.002], 10: [-0.006, -0.005, -0.007]}
    for m, ds in deltas.items():
        for seed, d in enumerate(ds):
            for boost in (False, True):
                s = Spec("mlp3x1000", "rigl", 0.9, 8, boost, seed, epochs=100, cycles=m if boost else None)
                records[s.key] = make_record(s, 0.89 + (d if boost else 0.0))
    for seed, d in enumerate([-0.003, -0.002, -0.004]):  # a short run with long cycles that lost
        for boost in (False, True):
            s = Spec("mlp3x1000", "rigl", 0.9, 8, boost, seed, epochs=20, cycles=1 if boost else None)
            records[s.key] = make_record(s, 0.88 + (d if boost else 0.0))
    points = study_report.curve(records)
    assert [p.cycle_steps for p in points] == [429, 858, 858, 1430, 2145, 4290]
    assert [p.run_steps for p in points] == [42900, 8580, 42900, 42900, 42900, 42900]
    assert [p.n for p in points] == [3, 3, 3, 5, 3, 3]
    assert points[0].high < 0 and points[2].high < 0 and points[3].low < 0 < points[3].high
    assert study_report.helpful_from(points) == (42900, 1430)
    assert study_report.helpful_from([p for p in points if p.high < 0]) is None
    # a shorter run's point that did not lose, contradicted by a longer run with longer cycles that lost
    point = lambda run, cycle, mean: study_report.CurvePoint((), cycle, run // 429, run, mean, mean - 0.1,  # noqa: E731
                                                             mean + 0.1, 3)
    assert study_report.helpful_from([point(8580, 429, 0.3), point(42900, 858, -0.3), point(42900, 2145, 0.3)]) == (
        42900, 2145)
    assert study_report.helpful_from([point(8580, 429, 0.3), point(42900, 858, 0.0)]) == (8580, 429)
    table = study_report.curve_table(points)
    assert table.splitlines()[2].startswith("| 429 | 100 | 42900 | RigL + Sup-tickets, 90 %, 8x8, 100 epochs, M = 10 | "
                                            "-0.60")
    from study.plot import plot_curve
    plot_curve(points, str(tmp_path / "curve.png"), "test")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_threshold_is_the_curve_of_the_committed_records():
    """``SHORTEST_HELPFUL_RUN`` and ``SHORTEST_HELPFUL_CYCLE`` (the one place the CLI's note on
    short runs and cycles reads) are what the committed records of both studies say."""
    from suptickets.methods import SHORTEST_HELPFUL_CYCLE, SHORTEST_HELPFUL_RUN
    both = {**study_records.load_records(os.path.join(ROOT, "results", "fashion-mnist"), study_plan.plan()),
            **study_records.load_records(os.path.join(ROOT, "results", "fashion-mnist-long"), study_plan.long_plan())}
    assert study_report.helpful_from(study_report.curve(both)) == (SHORTEST_HELPFUL_RUN, SHORTEST_HELPFUL_CYCLE)


def test_the_long_schedule_is_chosen_on_validation_over_common_seeds(tmp_path):
    records = {}

    def add(spec, val, test):
        r = make_record(spec, test)
        r["summary"]["validation"]["accuracy"] = val
        records[spec.key] = r

    for seed in range(3):
        add(Spec("mlp3x1000", "rigl", 0.9, 8, False, seed, epochs=100), 0.900, 0.99)  # best on test: no matter
        add(Spec("mlp3x1000", "rigl", 0.9, 8, True, seed, epochs=100, cycles=5), 0.905, 0.80)
        add(Spec("mlp3x1000", "rigl", 0.9, 8, True, seed, epochs=200, cycles=3), 0.905, 0.80)  # a tie: longer
        add(Spec("mlp3x1000", "rigl", 0.9, 8, True, seed), 0.99, 0.99)  # the 10-epoch study: not a candidate
        add(Spec("mlp3x1000", "rigl", 0.95, 1, True, seed, epochs=100), 0.99, 0.99)  # another sparsity
    # seed 2 of one candidate is missing: seed 2 counts for none, even where it would change the order
    del records[Spec("mlp3x1000", "rigl", 0.9, 8, True, 2, epochs=100, cycles=5).key]
    records[Spec("mlp3x1000", "rigl", 0.9, 8, False, 2, epochs=100).key]["summary"]["validation"]["accuracy"] = 0.99
    choice = study_report.choose_on_validation(records)
    assert choice.seeds == (0, 1)
    assert choice.row == Spec("mlp3x1000", "rigl", 0.9, 8, True, 0, epochs=100, cycles=5).row
    assert choice.validation[Spec("mlp3x1000", "rigl", 0.9, 8, False, 0, epochs=100).row] == pytest.approx(90.0)
    table = study_report.choice_table(choice)
    assert table.splitlines()[2] == "| RigL + Sup-tickets, 90 %, 8x8, 100 epochs, M = 5 (chosen) | 90.50 |"
    assert len(table.splitlines()) == 2 + 3
    one_seed = {k: r for k, r in records.items() if k.endswith("-s0")}
    assert study_report.choose_on_validation(one_seed) is None
    assert study_report.choose_on_validation({}) is None


def test_the_long_preset_is_the_configuration_chosen_on_the_committed_records():
    """``--preset fashion-mnist-long`` trains what the long study chose on the validation split."""
    from suptickets.train.config import PRESETS
    records = study_records.load_records(os.path.join(ROOT, "results", "fashion-mnist-long"), study_plan.long_plan())
    choice = study_report.choose_on_validation(records)
    network, method, sparsity, block, boost, _, epochs, cycles = choice.row
    preset = PRESETS["fashion-mnist-long"]
    assert (preset["model"], preset["method"], preset["sparsity"], tuple(preset["block_size"])) == (
        network, method, sparsity, (block, block))
    assert (preset["epochs"], preset["sup_tickets"]) == (epochs, boost)
    if boost:
        assert preset["cycles"] == (cycles if cycles is not None else 3)
    chosen = ("epochs", "method", "sparsity", "block_size", "sup_tickets", "cycles")
    assert {k: v for k, v in preset.items() if k not in chosen} == {  # the rest: the study's recipe
        k: v for k, v in PRESETS["fashion-mnist"].items() if k not in chosen}


def test_a_record_names_the_cpu_with_its_family_model_and_vector_isa(tmp_path):
    """Machines share a model name ("AMD EPYC") while their cores differ: the record tells them apart."""
    def info(*blocks):
        path = tmp_path / "cpuinfo"
        path.write_text("\n\n".join("\n".join(f"{k}\t: {v}" for k, v in b.items()) for b in blocks) + "\n")
        return str(path)

    epyc = {"processor": 0, "cpu family": 25, "model": 1, "model name": "AMD EPYC", "flags": "fpu sse2 avx avx2 fma"}
    xeon = {"processor": 0, "cpu family": 6, "model": 143, "model name": "Intel Xeon", "flags": "avx2 avx512f"}
    assert study_records.cpu_name(info(epyc, {**epyc, "processor": 1, "model": 17})) == \
        "AMD EPYC (family 25 model 1, AVX2)"
    assert study_records.cpu_name(info(xeon)) == "Intel Xeon (family 6 model 143, AVX-512)"
    assert study_records.cpu_name(info({"model name": "Some CPU", "cpu family": 6, "model": 2, "flags": "sse2"})) == \
        "Some CPU (family 6 model 2, no AVX2)"
    assert study_records.cpu_name(info({"model name": "Some CPU"})) == "Some CPU"
    assert study_records.cpu_name(str(tmp_path / "absent")) != ""


def test_the_cli_note_on_base_methods_is_the_report_of_the_committed_records():
    """Each figure of ``MEASURED_WITHOUT_GAIN`` (the CLI's note on base methods) is the booster − base
    test column of that method's 100-epoch row in the long report at that exploration fraction (the
    plan's variant that sets it, none for the default 0.5), and its interval holds zero."""
    from suptickets.methods import MEASURED_WITHOUT_GAIN
    text = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_study.py"), "--plan", "long",
                           "--report"], capture_output=True, text=True, check=True, timeout=300).stdout
    variants = {float(flags[1]): name for name, flags in study_plan.VARIANTS.items()
                if flags[:1] == ["--explore-fraction"]}
    for method, by_fraction in MEASURED_WITHOUT_GAIN.items():
        assert 0.5 in by_fraction and len(by_fraction) > 1
        name = study_report.NAMES[method]
        for fraction, delta in by_fraction.items():
            variant = "" if fraction == 0.5 else f" ({variants[fraction]})"
            row = next(line for line in text.splitlines()
                       if line.startswith(f"| {name} + Sup-tickets, 90 %, 8x8, 100 epochs, M = 3{variant} |"))
            assert row.split("|")[7].strip() == f"{delta} (n=5)"
            low, high = (float(x) for x in delta.split("[")[1].rstrip("]").split(","))
            assert low < 0 < high
