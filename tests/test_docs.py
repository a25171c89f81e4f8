"""The documentation: the mkdocs site builds with --strict (broken links, missing anchors and API objects that
mkdocstrings cannot find all fail), the README stays a short landing page whose relative links resolve, and the
pages stay in step with the code they show (example snippets, the default config, the fusion registry)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _slug(title: str) -> str:
    """Python-Markdown's toc slugify (what mkdocs uses for heading anchors)."""
    value = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def _anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    return {_slug(re.sub(r"[`*]", "", m.group(1))) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("mmfuse.Run", "mmfuse.Pipeline", "mmfuse.fuse", "register_method", "load_encoder", "IndexStore",
                 "mmfuse.retrievers.Retriever", "mmfuse.evaluate"):
        assert name in api, f"the API page lacks {name}"
    # the site works offline: no page loads a script, stylesheet or font from another host
    remote = re.compile(r"""<(?:script|link)[^>]+(?:src|href)=["']https?://""")
    for page in site.rglob("*.html"):
        assert not remote.search(page.read_text(encoding="utf-8")), f"{page.relative_to(site)} loads a remote asset"


def test_readme_is_a_short_landing_page_whose_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 260
    bad = []
    for m in LINK.finditer(FENCE.sub("", text)):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (README.parent / path).resolve() if path else README
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not bad, "\n".join(bad)


def _python_blocks(md: Path):
    for m in FENCE.finditer(md.read_text(encoding="utf-8")):
        if m.group(1) == "python":
            yield m.group(2).splitlines()


@pytest.mark.parametrize("md", [README, *PAGES], ids=lambda p: p.name)
def test_snippets_are_excerpts_of_the_tested_examples(md):
    """A python block that starts with ``# examples/python/NAME.py`` shows consecutive lines of that file, which
    tests/test_examples.py runs."""
    for lines in _python_blocks(md):
        first = lines[0].strip() if lines else ""
        if not first.startswith("# examples/python/"):
            continue
        source = (REPO / first[2:]).read_text(encoding="utf-8").splitlines()
        body = lines[1:]
        starts = [i for i, line in enumerate(source) if line == body[0]]
        assert any(source[i:i + len(body)] == body for i in starts), \
            f"{md.name}: the snippet marked {first[2:]} is not a verbatim excerpt of that file"


def test_configuration_page_shows_the_default_config_and_every_key():
    from mmfuse.config import DEFAULT_CONFIG_TOML, PipelineConfig

    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"```toml\n{DEFAULT_CONFIG_TOML}```" in page, "docs/configuration.md: the default config differs from " \
                                                        "mmfuse init's"
    schema = page.split("## The schema", 1)[1]
    # each table's model; [retrievers] is a dict of RetrieverConfig
    sections = [(typing.get_args(f.annotation) or (f.annotation,))[-1] for f in PipelineConfig.model_fields.values()]
    for section in sections:
        for field in section.model_fields:
            assert f"`{field}`" in schema, f"docs/configuration.md does not describe {section.__name__}.{field}"


def test_fusion_page_names_every_registered_method():
    from mmfuse.fusion import methods

    page = (DOCS / "fusion.md").read_text(encoding="utf-8")
    missing = [m for m in methods() if f"`{m}`" not in page]
    assert not missing, f"docs/fusion.md does not list {missing}"


OUTPUT_FLAG = re.compile(r"(?:^|\s)(?:-o|--output|--report|--json|--plots|--per-modality-dir|--stats|--cache-dir|"
                         r"--out)\s+([^\s\\#]+)")
INDEX_FLAG = re.compile(r"(?:^|\s)--index\s+([^\s\\#]+)")  # an output of `mmfuse index` only (search reads it)


@pytest.mark.parametrize("md", [README, *PAGES], ids=lambda p: p.name)
def test_commands_write_into_out_or_a_placeholder(md):
    """Shell examples write their outputs into out/ (git-ignored), never beside the sources."""
    bad = []
    for m in FENCE.finditer(md.read_text(encoding="utf-8")):
        if m.group(1) != "bash":
            continue
        for line in m.group(2).splitlines():
            cmd = line.split(" # ")[0]
            outputs = OUTPUT_FLAG.findall(cmd) + (INDEX_FLAG.findall(cmd) if "mmfuse index " in cmd else [])
            for path in outputs:
                if path.startswith(("out/", "$", "/tmp/", "-")) or path.isupper() or path.rstrip("/").isupper():
                    continue
                if path in ("DIR", "OUT") or path.startswith(("DIR", "OUT")):
                    continue
                bad.append(f"{line.strip()}  ->  {path}")
    assert not bad, f"{md.name}: outputs outside out/:\n" + "\n".join(bad)
