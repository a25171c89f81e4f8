"""`--config` on index/search/rerank: values come from the file, flags on the command line win."""

from __future__ import annotations

import pytest

from mmfuse.app.cli import main


def _err(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code != 0
    return capsys.readouterr().err


@pytest.fixture()
def config(tmp_path):
    main(["init", str(tmp_path / "mmfuse.toml")])
    return tmp_path / "mmfuse.toml"


def test_search_takes_index_from_config(config, tmp_path, capsys):
    # the default config names mmfuse-index beside the file; it does not exist yet, and the error says so
    err = _err(capsys, ["search", "red ball", "--config", str(config)])
    assert str(tmp_path / "mmfuse-index") in err
    # a flag overrides the file
    err = _err(capsys, ["search", "red ball", "--config", str(config), "--index", str(tmp_path / "other")])
    assert str(tmp_path / "other") in err and "mmfuse-index" not in err


def test_missing_required_values_name_the_flag_and_key(tmp_path, capsys):
    assert "--index is required (or set [index] path in --config)" in _err(capsys, ["search", "q"])
    run = tmp_path / "r.trec"
    run.write_text("q1 Q0 v1 1 1.0 t\n")
    (tmp_path / "q.tsv").write_text("q1\tred ball\n")
    err = _err(capsys, ["rerank", str(run), "--queries", str(tmp_path / "q.tsv"), "--videos", str(tmp_path),
                        "-o", str(tmp_path / "out.trec")])
    assert "--backend is required (or set [rerank] backend in --config)" in err
    assert not (tmp_path / "out.trec").exists()


def test_bad_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[fusion]\nmethod = "rrff"\n')
    err = _err(capsys, ["search", "q", "--config", str(bad)])
    assert "bad.toml" in err and "rrff" in err and "Traceback" not in err


def test_search_applies_config_fusion_norm_params_and_depth(config, tmp_path, monkeypatch):
    # the config's [fusion] settings reach the fusion call, unless --fusion names another method
    import mmfuse.pipeline as pipeline
    from mmfuse import Run

    text = config.read_text().replace('# method = "rrf"', 'method = "rrf"').replace("# params = { k = 60 }",
                                                                                    "params = { k = 5 }")
    config.write_text(text.replace("depth = 100", "depth = 7"))
    seen = []

    class FakePipeline:
        def run(self, queries, k, **kw):
            seen[-1]["k"] = k
            run = Run.from_dict({"q": {"v1": 1.0}}, name="fused")
            return pipeline.PipelineResult(queries=dict(queries), runs=[], fused=run, reranked=None, final=run)

    def fake_searcher(index, **kw):
        seen.append(kw)
        return FakePipeline()

    monkeypatch.setattr(pipeline, "searcher", fake_searcher)
    main(["search", "red ball", "--config", str(config), "--json"])
    assert seen[-1]["fusion"] == "rrf" and seen[-1]["k"] == 10 and seen[-1]["depth"] == 7
    assert seen[-1]["fusion_params"] == {"k": 5}
    main(["search", "red ball", "--config", str(config), "--json", "--fusion", "combsum"])
    assert seen[-1]["fusion"] == "combsum" and seen[-1]["fusion_params"] == {}
