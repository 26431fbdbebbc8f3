"""The fuzz harness's fixed corpus (fuzz/): mutated clips, WAVs, stills, manifests, configs, datasets, archive
lists and HTTP requests through every public entry point, each in a worker process with a deadline and a memory
bound. Every mutant must end in an answer or the project's one-line error: no traceback, no hang, no crash. The
mutants come from a fixed Hypothesis seed (the same plans every run), plus committed files that once broke an entry
point (tests/data/fuzz/). The long run is `python -m fuzz.run` (docs/robustness.md)."""

from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

from fuzz.campaign import Campaign  # noqa: E402
from fuzz.runner import GOOD, Runner  # noqa: E402
from fuzz.seeds import prepare  # noqa: E402

REGRESSIONS = sorted(p for p in (Path(__file__).parent / "data" / "fuzz").iterdir() if p.suffix != ".md")
SEED = 2026


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    runner = Runner(deadline=60.0, memory_mb=4096.0)
    yield Campaign(prepare(root / "seeds"), runner, root / "run")
    runner.stop()


def test_the_seeds_themselves_are_answered(campaign):
    """Every valid seed is answered by every entry point it feeds (a WAV, without frames, is refused): an entry point
    that refused everything would pass the mutant tests below without being fuzzed."""
    outcomes = campaign.baseline()
    unexpected = {what: o for what, o in outcomes.items() if (o["outcome"] == "answer") == what.endswith(".wav")}
    assert len(outcomes) >= 30 and not unexpected, unexpected


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_files_that_once_broke_an_entry_point(campaign, path):
    for entry in ("predict --bundle", "stream --fast"):
        request = campaign.media_request(entry, path, variant=0)
        outcome = campaign.runner.run({**request, "argv": [str(a) for a in request["argv"]]})
        assert outcome["outcome"] in GOOD, (entry, outcome)


@pytest.mark.parametrize("entry, count", [("predict --bundle", 30), ("predict --model", 6), ("stream --fast", 12),
                                          ("batch", 12), ("manifest", 30), ("config", 30), ("dataset", 30),
                                          ("archive list", 30), ("http", 30)])
def test_mutants_end_in_an_answer_or_the_one_line_error(campaign, entry, count):
    tally = campaign.run(entry, count, SEED)
    assert tally.tried >= min(count, 10)
    assert not tally.failures, "\n".join(f"{f['outcome']} on {f['what']} ({f['plan'][:300]}): "
                                         f"{str(f.get('detail'))[-600:]}" for f in tally.failures[:3])
    assert tally.slowest < 60.0
