"""`--config` on index/search/rerank: values come from the file, flags on the command line win."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import typer

from mmfuse.app.cli import main
from mmfuse.app.cli.common import apply_defaults, load_config_defaults


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

    import mmfuse.app.cli.videos as videos

    monkeypatch.setattr(videos, "searcher", fake_searcher)
    main(["search", "red ball", "--config", str(config), "--json"])
    assert seen[-1]["fusion"] == "rrf" and seen[-1]["k"] == 10 and seen[-1]["depth"] == 7
    assert seen[-1]["fusion_params"] == {"k": 5}
    main(["search", "red ball", "--config", str(config), "--json", "--fusion", "combsum"])
    assert seen[-1]["fusion"] == "combsum" and seen[-1]["fusion_params"] == {}


def test_load_config_defaults_resolves_paths_and_maps_flags(tmp_path):
    (tmp_path / "conf").mkdir()
    p = tmp_path / "conf" / "m.toml"
    p.write_text('[index]\npath = "idx"\nwindow = 5.0\n[retrievers.visual]\ncheckpoint = "clip.pt"\npooling = "maxsim"\n'
                 '[retrievers.audio]\nenabled = false\n[retrievers.asr]\ndense = false\n[retrievers.meta]\ndense = false\n'
                 '[fusion]\nmethod = "rrf"\nparams = { k = 20 }\n[rerank]\nmodel = "m"\nwindow = 8\nstep = 4\n[search]\nk = 7\n')
    d = load_config_defaults(p, "search")
    assert d["index"] == str(tmp_path / "conf" / "idx")
    assert d["clip_checkpoint"] == str(tmp_path / "conf" / "clip.pt")
    assert d["k"] == 7 and d["fusion"] == "rrf" and d["fusion_params"] == {"k": 20}
    assert d["modalities"] == "visual,ocr,asr,meta" and d["pooling"] == "maxsim" and d["no_dense"] is True
    assert d["window"] == 5.0 and load_config_defaults(p, "rerank")["window"] == 8
    assert load_config_defaults(None) == {}

    class Ctx:  # what a click Context offers
        params = {"config": str(p)}

        @staticmethod
        def get_parameter_source(name):
            return SimpleNamespace(name="COMMANDLINE" if name == "k" else "DEFAULT")

    assert load_config_defaults(Ctx, "search")["k"] == 7
    merged = apply_defaults(Ctx, {"k": 3, "fusion": None, "index": None}, d)
    assert merged == {"k": 3, "fusion": "rrf", "index": d["index"]}  # the flag the user passed wins


def test_apply_defaults_with_a_real_typer_command(tmp_path):
    """How `mmfuse index/search/rerank` use --config: the file fills every flag the user did not pass."""
    from typer.testing import CliRunner

    cfg = tmp_path / "m.toml"
    cfg.write_text('[index]\npath = "here"\n[search]\nk = 4\n[fusion]\nmethod = "rrf"\n')
    app = typer.Typer()
    seen = {}

    @app.command()
    def search(ctx: typer.Context, query: str, index: str = typer.Option(None, "--index"), k: int = typer.Option(10, "--k"),
               fusion: str = typer.Option(None, "--fusion"), config: str = typer.Option(None, "--config")):
        seen.update(apply_defaults(ctx, {"index": index, "k": k, "fusion": fusion}, load_config_defaults(ctx, "search")))

    assert CliRunner().invoke(app, ["q", "--config", str(cfg), "--k", "2"]).exit_code == 0
    assert seen == {"index": str(tmp_path / "here"), "k": 2, "fusion": "rrf"}
    assert CliRunner().invoke(app, ["q", "--config", str(cfg), "--fusion", "combsum"]).exit_code == 0
    assert seen == {"index": str(tmp_path / "here"), "k": 4, "fusion": "combsum"}
