"""The pipeline config: the commented default, validation errors that name the key, `mmfuse init`."""

from __future__ import annotations

import tomllib

import pytest

from mmfuse.config import DEFAULT_CONFIG_TOML, PipelineConfig, load_config, parse_config, write_default_config
from mmfuse.errors import ConfigError


def test_default_text_is_the_default_config():
    cfg = parse_config(tomllib.loads(DEFAULT_CONFIG_TOML), "default")
    assert cfg.model_dump() == PipelineConfig().model_dump()
    assert list(cfg.retrievers) == ["visual", "audio", "ocr", "asr", "meta"]
    # the file names its five tables; a config built in Python names none
    assert cfg.named_retrievers == {"visual", "audio", "ocr", "asr", "meta"} and PipelineConfig().named_retrievers == set()
    assert cfg.fusion.method is None and cfg.rerank.enabled is False and cfg.search.k == 10


def test_partial_retrievers_section_keeps_the_other_builtins():
    cfg = parse_config({"retrievers": {"ocr": {"enabled": False}, "mine": {"kind": "plugin", "ref": "m:C"}}})
    assert list(cfg.enabled_retrievers()) == ["visual", "audio", "asr", "meta", "mine"]
    assert cfg.retrievers["mine"].kind == "plugin"


@pytest.mark.parametrize("text, expected", [
    ('[fusion]\nmethod = "rrff"', "cfg.toml: [fusion] method: unknown fusion method 'rrff' (did you mean 'rrf'?); allowed: "),
    ('[fusion]\nnorm = "minmax"', "[fusion] norm: unknown normalization 'minmax' (did you mean 'min-max'?)"),
    ('[fusion]\nfoo = 1', "cfg.toml: unknown key 'foo' in [fusion]; allowed: method, norm, weights, depth, params"),
    ('[fusion]\nweights = [0.0, 0.0]', "[fusion] weights: weights must be >= 0 with a positive sum"),
    ('bogus = 1', "unknown key 'bogus' in top level; allowed: index, retrievers, fusion, rerank, expand, search"),
    ('[rerank]\ngrid = "2y2"', '[rerank] grid: grid must look like ROWSxCOLS (e.g. "2x2")'),
    ('[rerank]\nenabled = true', '[rerank]: enabled = true needs model = "NAME"'),
    ('[rerank]\nbackend = "vllm"', "[rerank] backend: Input should be 'openai' or 'transformers' (got 'vllm')"),
    ('[rerank]\nwindow = 4\nstep = 5', "step (5) must be <= window (4)"),
    ('[retrievers.x]\nmodel = "a"', "[retrievers.x] needs kind = one of visual, audio, ocr, asr, meta, caption, plugin"),
    ('[retrievers.ocr]\naggregation = "median"', "[retrievers.ocr] aggregation: Input should be 'max', 'mean', 'sum' or 'topn'"),
    ('[retrievers.ocr]\nmodle = "x"', "unknown key 'modle' in [retrievers.ocr]; allowed: kind, enabled, model"),
    ('[retrievers.p]\nkind = "plugin"', '[retrievers.p]: kind = "plugin" needs ref = "module:Class"'),
    ('[index]\nwindow = -1', "[index] window: Input should be greater than 0 (got -1)"),
    ('[search]\nk = "ten"', "[search] k: Input should be a valid integer"),
])
def test_bad_config_is_one_line_naming_key_and_allowed(tmp_path, text, expected):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert expected in msg and "\n" not in msg
    assert msg.startswith(str(p))


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("[fusion\nmethod = 1\n")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML: .*line 1"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist .*mmfuse init"):
        load_config(tmp_path / "nope.toml")


def test_write_default_refuses_overwrite_without_force(tmp_path):
    p = write_default_config(tmp_path / "mmfuse.toml")
    assert p.read_text() == DEFAULT_CONFIG_TOML
    p.write_text("# mine\n")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        write_default_config(p)
    assert p.read_text() == "# mine\n"
    write_default_config(p, force=True)
    assert p.read_text() == DEFAULT_CONFIG_TOML
    (tmp_path / "sub").mkdir()
    assert write_default_config(tmp_path / "sub") == tmp_path / "sub" / "mmfuse.toml"  # a folder gets mmfuse.toml
    with pytest.raises(ConfigError, match="folder does not exist"):
        write_default_config(tmp_path / "nope" / "m.toml")


def test_cli_init(tmp_path, capsys):
    from mmfuse.app.cli import main

    target = tmp_path / "pipe.toml"
    main(["init", str(target)])
    assert tomllib.loads(target.read_text())["search"]["k"] == 10
    with pytest.raises(SystemExit) as e:
        main(["init", str(target)])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "already exists; pass --force" in err and "Traceback" not in err
    main(["init", str(target), "--force"])
