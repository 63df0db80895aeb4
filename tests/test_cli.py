"""The ``re-pipeline`` command line against a real PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from re_pipeline.cli import build_parser, main
from re_pipeline.config import SAMPLE_CORPUS, BaselineTrainConfig, DocRETrainConfig, SpertTrainConfig, from_args


def _run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_command_explains_itself() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        assert helps.get(name), f"{name} has no one-line help"
        assert "usage: re-pipeline" in p.format_help()
    assert {"ingest", "load", "import-annotated", "query", "facts", "db", "demo"} <= set(sub.choices)


def test_ingest_reports_and_records_quarantine(
    engine: sa.engine.Engine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(b'{"id": 1, "text": "Ann met Bob."}\n{"id": 2\n{"id": 3, "text": ""}\n')
    code, out, _ = _run(capsys, database_url, "ingest", str(corpus), "--out", str(tmp_path / "out"))
    assert code == 0
    assert "read 3 records: 1 documents written to 1 shards, 2 quarantined" in out
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT reason FROM quarantine ORDER BY quarantine_id")).scalars().all()
        run = conn.execute(sa.text("SELECT command, status, counts FROM extraction_runs")).one()
    assert rows[0].startswith("malformed JSON") and rows[1] == "empty text"
    assert run.command == "ingest" and run.status == "success" and run.counts["quarantined"] == 2
    code, _, err = _run(capsys, database_url, "ingest", str(corpus), "--out", str(tmp_path / "out"))
    assert code == 2 and "--overwrite" in err
    code, _, err = _run(capsys, database_url, "ingest", str(corpus), "--out", "x", "--no-db", "--incremental")
    assert code == 2 and "cannot go with --no-db" in err
    with pytest.raises(SystemExit):  # argparse: a size of 0 is refused up front
        main(["ingest", str(corpus), "--out", "x", "--shard-size", "0"])
    assert "must be a positive integer, got 0" in capsys.readouterr().err


def test_import_query_and_facts(
    engine: sa.engine.Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, database_url, "import-annotated", str(SAMPLE_CORPUS))
    assert code == 0 and "loaded=30" in out
    code, out, _ = _run(capsys, database_url, "query", "SELECT count(*) AS n FROM documents", "--format", "json")
    assert json.loads(out) == [{"n": 30}]
    code, out, err = _run(capsys, database_url, "query", "DROP TABLE facts")
    assert code == 2 and "read-only" in err
    code, out, _ = _run(capsys, database_url, "facts", "--relation", "country", "--limit", "3", "--format", "csv")
    lines = out.strip().splitlines()
    assert lines[0] == "head,relation_id,relation,tail,confidence,support" and len(lines) == 4
    assert all(",P17,country," in line for line in lines[1:])
    code, out, _ = _run(capsys, database_url, "query", "--name", "most_supported_facts", "--param", "limit=2")
    assert code == 0 and out.strip().endswith("(2 rows)")
    code, out, _ = _run(capsys, database_url, "db", "status")
    assert "0 pending" in out and "***" not in out.split("\n", 1)[1]


@pytest.mark.parametrize(
    ("argv", "config_cls", "flag", "name", "value"),
    [
        (["docred", "train", "--train", "t", "--dev", "d"], DocRETrainConfig, "--step2-lr", "step2_lr", 3e-4),
        (["spert", "train", "--train", "t", "--out", "m"], SpertTrainConfig, "--neg-relations", "neg_relations", 7),
        (["spert", "train", "--train", "t", "--out", "m"], SpertTrainConfig, "--no-bias-correction",
         "bias_correction", False),
        (["baseline", "re", "train", "--train", "t", "--out", "m"], BaselineTrainConfig, "--neg-per-sentence",
         "neg_per_sentence", 5),
    ],
)  # fmt: skip
def test_train_flags_default_to_the_trainer_config_and_reach_it(argv, config_cls, flag, name, value) -> None:
    parser = build_parser()
    defaults = config_cls()
    assert from_args(config_cls, parser.parse_args(argv)) == defaults  # the CLI adds no defaults of its own
    changed = from_args(
        config_cls, parser.parse_args([*argv, flag] if isinstance(value, bool) else [*argv, flag, str(value)])
    )
    assert changed == replace(defaults, **{name: value})


def test_extract_runs_its_encoders_where_cpu_runtime_says(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny_models import tiny_registry

    from re_pipeline.extract import Extractor
    from re_pipeline.ingest import ingest
    from re_pipeline.onnx_encoder import OnnxEncoder

    built: list[Extractor] = []
    real = Extractor.from_registry.__func__

    def spy(cls: type[Extractor], *args: object, **kwargs: object) -> Extractor:
        built.append(real(cls, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(Extractor, "from_registry", classmethod(spy))
    monkeypatch.setenv("RE_PIPELINE_MODELS_DIR", str(tiny_registry(tmp_path / "models")))
    (tmp_path / "corpus.json").write_text(json.dumps(json.loads(SAMPLE_CORPUS.read_text())[:2]))
    shards = ingest(tmp_path / "corpus.json", tmp_path / "shards", progress=False).shards
    code, out, _ = _run(capsys, database_url, "extract", *shards, "--out", str(tmp_path / "out"), "--device", "cpu",
                        "--cpu-runtime", "onnx")  # fmt: skip
    assert code == 0 and "2 documents" in out
    assert isinstance(built[0].spert.model.encoder, OnnxEncoder)
