"""Batch recognition over an archive on Ray Data (embedded): one row per clip, errors as rows, resume, scores."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from r1omni_edge.batch.job import BatchOptions, run_batch  # noqa: E402
from r1omni_edge.batch.store import ResultStore  # noqa: E402
from r1omni_edge.labels import confusion_matrix, uar, war  # noqa: E402
from r1omni_edge.recognition import RecognitionOptions  # noqa: E402


@pytest.fixture(scope="module")
def archive(clips, tmp_path_factory):
    """Two labelled folders: good clips, a clip without audio, a corrupt file and a text file named .mp4."""
    root = tmp_path_factory.mktemp("archive")
    (root / "happy").mkdir()
    (root / "sad").mkdir()
    shutil.copy(clips["av"], root / "happy" / "a.mp4")
    shutil.copy(clips["short"], root / "happy" / "b.mp4")
    shutil.copy(clips["video_only"], root / "sad" / "silent.mp4")
    data = clips["av"].read_bytes()
    (root / "sad" / "corrupt.mp4").write_bytes(data[: len(data) // 3] + os.urandom(2000))
    (root / "sad" / "notes.mp4").write_text("this is not a video\n")
    (root / "readme.txt").write_text("not listed: not a video suffix\n")
    return root


@pytest.fixture(scope="module", params=[".jsonl", ".parquet"])
def first_run(request, bundles, archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / f"rows{request.param}"
    summary = run_batch(bundles["fp32"][1], archive, out, BatchOptions(RecognitionOptions(mode="label"), labels="mafw", workers=2))
    return out, summary


def test_one_row_per_clip_with_errors_where_they_belong(first_run, archive):
    out, summary = first_run
    rows = {os.path.relpath(r["path"], archive): r for r in ResultStore(out).read()}
    assert sorted(rows) == ["happy/a.mp4", "happy/b.mp4", "sad/corrupt.mp4", "sad/notes.mp4", "sad/silent.mp4"]
    assert summary.clips == 5 and summary.written == 5 and summary.skipped == 0
    for good in ("happy/a.mp4", "happy/b.mp4", "sad/silent.mp4"):
        row = rows[good]
        assert row["error"] is None and row["label"] in row["probabilities"] and len(row["sha256"]) == 64
        assert row["truth"] == good.split("/")[0]
    assert rows["happy/a.mp4"]["audio"] == "present" and rows["sad/silent.mp4"]["audio"] == "missing"
    assert rows["happy/a.mp4"]["notes"] == [] and any("5 frame(s) decoded" in n for n in rows["happy/b.mp4"]["notes"])
    for bad in ("sad/corrupt.mp4", "sad/notes.mp4"):
        assert rows[bad]["error"] and rows[bad]["label"] is None and "Traceback" not in rows[bad]["error"]
    assert "notes.mp4" in rows["sad/notes.mp4"]["error"]
    assert summary.errors == sum(bool(r["error"]) for r in rows.values()) == 2
    assert all(":" in r["worker"] for r in rows.values())  # host:pid of the worker that ran the clip


def test_scores_equal_labels_py_on_the_same_predictions(first_run):
    out, summary = first_run
    rows = ResultStore(out).read()
    truth = [r["truth"] for r in rows]
    predicted = [None if r["error"] else r["label"] for r in rows]
    report = json.loads(out.with_name("rows.metrics.json").read_text())
    assert report["war"] == pytest.approx(war(truth, predicted)) and report["uar"] == pytest.approx(uar(truth, predicted))
    assert report["clips"] == 5 and report["errors"] == 2
    from r1omni_edge.labels import label_set

    assert report["confusion"] == confusion_matrix(truth, predicted, label_set("mafw"))[1]
    assert out.with_name("rows.confusion.png").stat().st_size > 1000 and summary.report == report


def test_a_rerun_skips_what_the_output_holds(first_run, bundles, archive):
    out, _ = first_run
    summary = run_batch(bundles["fp32"][1], archive, out, BatchOptions(RecognitionOptions(mode="label"), labels="mafw"))
    assert summary.skipped == 5 and summary.written == 0 and len(ResultStore(out).read()) == 5


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_killed_run_resumes_to_exactly_one_row_per_clip(suffix, bundles, archive, tmp_path, spawn):
    """The CLI is killed once rows are written; the same command then finishes the archive."""
    out = tmp_path / f"rows{suffix}"
    command = [sys.executable, "-m", "r1omni_edge.cli", "batch", "--bundle", str(bundles["fp32"][1]), "--input",
               str(archive), "--output", str(out), "--mode", "label", "--batch-size", "1"]
    process = spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if out.exists() and 1 <= len(ResultStore(out).read()) < 5:
            break
        time.sleep(0.2)
    partial = len(ResultStore(out).read()) if out.exists() else 0
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 1 <= partial < 5, "the run was not caught midway"
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = ResultStore(out).read()
    assert len(rows) == 5 and len({r["path"] for r in rows}) == 5


def test_lists_name_their_clips_and_labels(tmp_path, clips):
    from r1omni_edge.batch.archive import list_archive
    from r1omni_edge.errors import InputError
    from r1omni_edge.labels import label_set

    mafw = label_set("mafw")
    (tmp_path / "clips").mkdir()
    shutil.copy(clips["av"], tmp_path / "clips" / "x.mp4")
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nclips/x.mp4,Happy\n")
    (clip,) = list_archive(listing, mafw)
    assert clip.path == str((tmp_path / "clips" / "x.mp4").resolve()) and clip.truth == "happy"
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(tmp_path / "clips" / "x.mp4")}) + "\n\n")
    assert list_archive(tmp_path / "list.jsonl", mafw)[0].truth is None
    listing.write_text("file,label\nclips/x.mp4,happy\n")
    with pytest.raises(InputError, match="list.csv: the CSV has no 'path' column"):
        list_archive(listing, mafw)
    listing.write_text("path,label\nclips/x.mp4,joyful-ish\n")
    with pytest.raises(InputError, match="list.csv:2: label 'joyful-ish' is not one of"):
        list_archive(listing, mafw)
    (tmp_path / "bad.jsonl").write_text('{"path": "a.mp4"}\nnot json\n')
    with pytest.raises(InputError, match="bad.jsonl:2: not valid JSON"):
        list_archive(tmp_path / "bad.jsonl", mafw)
    with pytest.raises(InputError, match="--input takes a folder of clips, a .csv or a .jsonl list, not a .txt"):
        (tmp_path / "x.txt").write_text("x")
        list_archive(tmp_path / "x.txt", mafw)


def test_an_output_of_something_else_is_refused(tmp_path):
    from r1omni_edge.errors import InputError

    other = tmp_path / "other.jsonl"
    other.write_text('{"user": 1}\n')
    with pytest.raises(InputError, match="not rows of this job; write to a new --output"):
        ResultStore(other)
    with pytest.raises(InputError, match="--output must end in .jsonl or .parquet"):
        ResultStore(tmp_path / "rows.csv")
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"path": "/a.mp4", "error": null}\n{"path": "/b.m')
    assert [r["path"] for r in ResultStore(cut).read()] == ["/a.mp4"] and cut.read_text().endswith("}\n")


def test_eval_is_the_batch_job_for_a_bundle_and_a_checkpoint_alike(tiny, bundles, archive, tmp_path, capsys):
    """eval on a labelled folder: the job's rows, kept with --output; plain greedy on both sides answers the same;
    the failed clips are named and count as wrong; the scores are labels.py's on the rows' own answers."""
    from r1omni_edge.cli import main
    from r1omni_edge.labels import label_set, normalize_label
    from r1omni_edge.prompt import parse_answer

    reports = {}
    for kind, source in (("model", ["--model", tiny.checkpoint, "--models-dir", tiny.root]),
                         ("bundle", ["--bundle", bundles["fp32"][1], "--free-answer"])):
        out = tmp_path / f"{kind}.jsonl"
        command = ["eval", *map(str, source), "--data", str(archive), "--labels", "mafw", "--max-new-tokens", "12",
                   "--output", str(out), "--json"]
        assert main(command) == 0
        reports[kind] = json.loads(capsys.readouterr().out)
        rows = {os.path.relpath(r["path"], archive): r for r in ResultStore(out).read()}
        assert len(rows) == 5 and sorted(reports[kind]["errors"]) == sorted(
            str(archive / name) for name in ("sad/corrupt.mp4", "sad/notes.mp4"))
        order = sorted(rows)  # the archive's order: sorted paths
        truth = [name.split("/")[0] for name in order]
        predicted = [normalize_label(parse_answer(rows[n]["text"] or "").answer, label_set("mafw"), exact=True)
                     for n in order]
        assert reports[kind]["predictions"] == predicted
        assert reports[kind]["war"] == pytest.approx(war(truth, predicted))
        assert reports[kind]["uar"] == pytest.approx(uar(truth, predicted))
        metrics = json.loads(out.with_name(f"{kind}.metrics.json").read_text())
        assert metrics["war"] == reports[kind]["war"] and metrics["clips"] == 5 and metrics["errors"] == 2
        assert main(command) == 0  # a rerun resumes: nothing left to do, the same scores
        assert json.loads(capsys.readouterr().out)["war"] == reports[kind]["war"] and len(ResultStore(out).read()) == 5
    assert reports["bundle"]["predictions"] == reports["model"]["predictions"]
    assert reports["bundle"]["confusion"] == reports["model"]["confusion"]


def test_a_published_dataset_runs_each_row_as_it_asks(tiny, tmp_path):
    """A dataset JSON in the published format: a row whose prompt has no <audio> runs video-only; a checkpoint
    opened for --labels dfew answers with that set."""
    from r1omni_edge.batch.archive import list_archive
    from r1omni_edge.labels import label_set
    from r1omni_edge.synthetic.task import write_task

    data = write_task(tmp_path, train=1, held_out=2)["eval"]
    rows = json.loads(data.read_text())
    rows[1]["conversations"][0]["value"] = rows[1]["conversations"][0]["value"].replace("<audio>", "")
    data.write_text(json.dumps(rows))
    clips = list_archive(data, label_set("dfew"))
    assert [c.use_audio for c in clips] == [True, False] and all(c.instruction for c in clips)
    out = tmp_path / "rows.jsonl"
    run_batch(tiny.checkpoint, data, out, BatchOptions(RecognitionOptions(mode="label"), labels="dfew",
                                                       model_options={"models_dir": str(tiny.root)}))
    by_path = {r["path"]: r for r in ResultStore(out).read()}
    assert [by_path[c.path]["audio"] for c in clips] == ["present", "not used"]
    assert all(set(r["probabilities"]) == set(label_set("dfew")) for r in by_path.values())


def test_a_model_that_cannot_load_stops_the_job_with_one_clear_error(bundles, archive, tmp_path):
    from r1omni_edge.errors import InputError

    out = tmp_path / "rows.jsonl"
    with pytest.raises(InputError, match="neither a bundle"):
        run_batch(tmp_path, archive, out, BatchOptions())
    with pytest.raises(InputError, match="the bundle answers with the mafw label set"):
        run_batch(bundles["fp32"][1], archive, out, BatchOptions(labels="dfew"))
    damaged = tmp_path / "bundle"  # the sizes are right, the bytes are not: only the worker's load finds it
    shutil.copytree(bundles["fp32"][1], damaged)
    vision = bytearray((damaged / "vision.onnx").read_bytes())
    vision[-64:] = bytes(64)
    (damaged / "vision.onnx").write_bytes(bytes(vision))
    with pytest.raises(InputError, match=r"^on a Ray worker: .*vision.onnx: its sha256 differs"):
        run_batch(damaged, archive, out, BatchOptions())
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_an_unwritable_output_stops_the_job_before_ray_starts(suffix, bundles, archive, tmp_path, monkeypatch):
    """The driver writes the rows: a path it cannot write is its own one-line error, before any worker starts
    (it was found after the first clip, 12 s later, and blamed on a Ray worker)."""
    import r1omni_edge.batch.job as job
    from r1omni_edge.errors import OutputError

    monkeypatch.setattr(job, "_start_ray", lambda address: pytest.fail("Ray was started"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(OutputError, match=f"^{blocker}(/rows{suffix})?: --output: cannot write there .*(a file is "
                                         "where a directory should be|a part of the path is a file)"):
        run_batch(bundles["fp32"][1], archive, blocker / f"rows{suffix}", BatchOptions())


def test_without_an_address_ray_starts_its_own_instance(monkeypatch):
    """ray.init() alone joins the cluster `ray start` last left on the machine; the job asks for a new local instance
    unless --ray-address or RAY_ADDRESS (as `ray job submit` sets it) names a cluster."""
    import ray

    from r1omni_edge.batch import job

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job._start_ray(job.cluster_address(None))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6380")
    job._start_ray(job.cluster_address(None))
    job._start_ray(job.cluster_address("ray://head:10001"))
    assert [call["address"] for call in calls] == ["local", "127.0.0.1:6380", "ray://head:10001"]
    assert "num_cpus" in calls[0] and "num_cpus" not in calls[1]


@pytest.fixture
def local_cluster(tmp_path):
    """A real Ray cluster on this machine: a head bound to 127.0.0.1 and one more node, one CPU each. The in-process
    runs' embedded Ray goes down first: `ray stop` at the end stops every Ray of this machine."""
    import socket
    import tempfile

    import ray as ray_module

    ray_module.shutdown()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = [str(Path(sys.executable).with_name("ray"))]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    env = dict(os.environ, RAY_AUTH_MODE="token")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run(ray + ["start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                          *common], env=env, check=True, capture_output=True, timeout=120)
    try:
        subprocess.run(ray + ["start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run(ray + ["stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_run_equals_the_embedded_one_and_survives_a_killed_worker(local_cluster, bundles, archive, clips,
                                                                           tmp_path, spawn):
    address, env = local_cluster
    bigger = tmp_path / "archive"
    shutil.copytree(archive, bigger)
    for index in range(8):  # enough clips for a worker to be killed mid-run
        shutil.copy(clips["av"], bigger / "happy" / f"copy{index}.mp4")
    command = [sys.executable, "-m", "r1omni_edge.cli", "batch", "--bundle", str(bundles["fp32"][1]), "--input",
               str(bigger), "--mode", "label", "--batch-size", "1", "--workers", "2"]
    embedded = tmp_path / "embedded.jsonl"
    assert subprocess.run(command + ["--output", str(embedded)], env=env, capture_output=True,
                          timeout=300).returncode == 0
    clustered = tmp_path / "cluster.jsonl"
    process = spawn(command + ["--output", str(clustered), "--ray-address", address], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.time() + 180, None
    while time.time() < deadline and process.poll() is None and killed is None:
        if clustered.exists() and len(ResultStore(clustered).read()) >= 2:
            workers = subprocess.run(["pgrep", "-f", "ray::MapWorker"], capture_output=True, text=True).stdout.split()
            if workers:
                killed = int(workers[0])
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    _, err = process.communicate(timeout=300)
    assert killed is not None, "no worker was caught mid-run"
    assert process.returncode == 0, err[-2000:]
    rows, reference = ResultStore(clustered).read(), ResultStore(embedded).read()
    assert len(rows) == len({r["path"] for r in rows}) == len(reference) == 13
    by_path = {r["path"]: r for r in reference}
    for row in rows:
        expected = by_path[row["path"]]
        assert (row["label"], bool(row["error"]), row["sha256"]) == (expected["label"], bool(expected["error"]),
                                                                    expected["sha256"])
        if row["probabilities"]:
            assert row["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
