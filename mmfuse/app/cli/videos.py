"""Commands over your own videos: ``mmfuse index`` and ``mmfuse search``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mmfuse.config import AGGREGATIONS, POOLINGS
from mmfuse.encoders import load_encoder
from mmfuse.errors import MmfuseError, ParameterError
from mmfuse.expand import METHODS as EXPAND_METHODS
from mmfuse.expand import build_expander
from mmfuse.fusion import get_method
from mmfuse.ingest import IndexConfig, index_folder
from mmfuse.ingest.caption import INPUTS as CAPTION_INPUTS
from mmfuse.ingest.plan import ASR_TASKS
from mmfuse.ingest.ray_engine import index_with_ray
from mmfuse.pipeline import Pipeline, searcher
from mmfuse.rerankers import load_queries
from mmfuse.store.lance import IndexStore
from mmfuse.utils.files import atomic_write

from .args import Checked, Choice, Csv, Float, Int
from .common import (
    app,
    apply_defaults,
    config_defaults,
    console,
    err_console,
    legend,
    load_config_defaults,
    narrow_table,
    progress_bar,
    required,
    short_names,
    split_csv,
    warn,
)

ENGINES = ("local", "ray")


@app.command("index")
def index_cmd(
    ctx: typer.Context,
    video_dir: str = typer.Argument(..., help="Folder of videos (searched recursively)."),
    index: Optional[str] = typer.Option(None, "--index", help="Index directory (created if missing)."),
    modalities: str = typer.Option("visual,audio,ocr,asr,meta", "--modalities", parser=Csv(),
                                   help="Comma-separated built-in modalities (visual, audio, ocr, asr, meta, caption), "
                                        "or 'none' (plug-ins only)."),
    retriever: list[str] = typer.Option([], "--retriever", help="Plug-in: module:Class or entry-point name (repeatable)."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="open_clip model name, config JSON or local dir."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", help="open_clip pretrained tag."),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint", help="Local CLIP checkpoint file."),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="CLAP model directory or hub name."),
    metadata: Optional[str] = typer.Option(None, "--metadata", help="Sidecar JSON/CSV (default VIDEO_DIR/metadata.json)."),
    window: float = typer.Option(10.0, "--window", parser=Float(min=0, open_min=True), help="Segment length in seconds."),
    frames: int = typer.Option(4, "--frames", parser=Int(min=1, max=64), help="Frames sampled per segment."),
    frame_size: int = typer.Option(960, "--frame-size", parser=Int(min=32, max=8192),
                                   help="Longer side of decoded frames in pixels (CLIP, OCR and captions read them)."),
    workers: int = typer.Option(1, "--workers", parser=Int(min=1), help="Files processed in parallel."),
    no_dense: bool = typer.Option(False, "--no-dense", help="Skip dense text embeddings of ASR/metadata."),
    engine: str = typer.Option("local", "--engine", parser=Choice(ENGINES),
                               help="local (threads on this machine) or ray (Ray Data pipeline)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: cluster to join ('auto', 'ray://host:10001')."),
    asr_model: Optional[str] = typer.Option(None, "--asr-model",
                                            help="faster-whisper model: size name (small, large-v3) or folder "
                                                 "(default: the bundled tiny.en)."),
    asr_task: str = typer.Option("transcribe", "--asr-task", parser=Choice(ASR_TASKS),
                                 help="translate: also index Whisper's English translation (modality asr_en; needs a "
                                      "multilingual --asr-model)."),
    ocr_det_model: Optional[str] = typer.Option(None, "--ocr-det-model", help="PaddleOCR ONNX text detector file."),
    ocr_rec_model: Optional[str] = typer.Option(None, "--ocr-rec-model",
                                                help="PaddleOCR ONNX recogniser file (another language's)."),
    ocr_rec_keys: Optional[str] = typer.Option(None, "--ocr-rec-keys", help="The recogniser's character list file."),
    text_model: Optional[str] = typer.Option(None, "--text-model",
                                             help="Dense text embedder: sentence-transformers name or folder "
                                                  "(default: the bundled all-MiniLM-L6-v2; search uses the same)."),
    vlm_base_url: Optional[str] = typer.Option(None, "--vlm-base-url",
                                               help="Captions: OpenAI-compatible server (env MMFUSE_VLM_BASE_URL, "
                                                    "OPENAI_BASE_URL)."),
    vlm_model: Optional[str] = typer.Option(None, "--vlm-model",
                                            help="Captions: served model name, or a local model folder "
                                                 "(env MMFUSE_VLM_MODEL)."),
    vlm_cache: Optional[str] = typer.Option(None, "--vlm-cache",
                                            help="Caption answer cache (default ~/.cache/mmfuse/llm; '' = none)."),
    vlm_timeout: float = typer.Option(120.0, "--vlm-timeout", parser=Float(min=0, open_min=True),
                                      help="Seconds per caption request."),
    vlm_retries: int = typer.Option(2, "--vlm-retries", parser=Int(min=0), help="Retries on timeouts, 429 and 5xx."),
    vlm_concurrency: int = typer.Option(4, "--vlm-concurrency", parser=Int(min=1), help="Requests in flight at once."),
    caption_template: Optional[str] = typer.Option(None, "--caption-template",
                                                   help="Caption prompt file (fields {frames}, {seconds}, {layout})."),
    caption_input: str = typer.Option("grid", "--caption-input", parser=Choice(CAPTION_INPUTS),
                                      help="grid: a segment's frames tiled into one image; frames: one image each."),
    caption_cell: int = typer.Option(336, "--caption-cell", parser=Int(min=16, max=4096),
                                     help="Width in pixels of each frame the model sees."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
    repair: bool = typer.Option(False, "--repair", help="Repair a damaged index first (re-indexes what was lost)."),
) -> None:
    """Index a folder of videos: new and changed files only; bad files are reported and skipped.

    A file already in the index gets only the modalities it lacks (adding --modalities caption captions, and keeps
    what the index holds). Captions describe each segment's frames with a vision-language model."""
    v = config_defaults(ctx, "index", locals())
    index = required(v["index"], "--index", "[index] path")
    modalities, retriever, metadata, window, frames, workers, no_dense = (
        v[n] for n in ("modalities", "retriever", "metadata", "window", "frames", "workers", "no_dense"))
    clip_model, clip_pretrained, clip_checkpoint, clap_model = (
        v[n] for n in ("clip_model", "clip_pretrained", "clip_checkpoint", "clap_model"))
    mods = split_csv(modalities) or []
    cfg = IndexConfig(
        modalities=[] if [m.lower() for m in mods] == ["none"] else mods, window=window, frames_per_segment=frames,
        frame_size=v["frame_size"],
        clip_model=clip_model,
        clip_pretrained=clip_pretrained, clip_checkpoint=clip_checkpoint, clap_model=clap_model,
        dense_text=not no_dense, retrievers=list(retriever), metadata=metadata, workers=workers,
        **{n: v[n] for n in ("asr_model", "asr_task", "ocr_det_model", "ocr_rec_model", "ocr_rec_keys", "text_model",
                             "vlm_base_url", "vlm_model", "vlm_timeout", "vlm_retries", "vlm_concurrency",
                             "caption_input", "caption_cell")},
        vlm_cache=True if v["vlm_cache"] is None else v["vlm_cache"] or None,
        caption_template=v["caption_template"] or "caption",
    )
    if repair:
        for line in IndexStore.repair(index):
            err_console.print(f"repair: {line}", highlight=False, soft_wrap=True)
    bar = progress_bar(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                       TextColumn("{task.fields[segments]} segments"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), TextColumn("{task.fields[label]}"))
    with bar:
        task = bar.add_task("index", total=None, segments=0, label="")

        def progress(done: int, total: int, label: str) -> None:
            name, _, segs = label.rpartition(" | ")
            bar.update(task, completed=done, total=total, segments=segs.split()[0] if segs else 0, label=escape(name[-40:]))

        if engine == "ray":
            summary = index_with_ray(video_dir, index, address=address, config=cfg, progress=progress)
        else:
            summary = index_folder(video_dir, index, cfg, progress=progress)
    for w in summary.warnings:
        warn(w)
    table = Table(title=escape(f"mmfuse index {index}"), show_lines=False)
    table.add_column("status")
    table.add_column("count", justify="right")
    table.add_column("details")
    table.add_row("indexed", str(len(summary.indexed)),
                  f"{sum(n for _, n, _ in summary.indexed)} segments, {summary.seconds:.1f} s of video in {summary.wall:.1f} s")
    unchanged = sum(why == "unchanged" for _, why in summary.skipped)
    table.add_row("skipped", str(len(summary.skipped)), f"{unchanged} unchanged since the last run" if unchanged else "")
    for name, why in summary.skipped:
        if why != "unchanged":
            table.add_row("", "", f"{name}: {why}")
    if summary.removed:
        table.add_row("removed", str(len(summary.removed)), "no longer in the folder")
    table.add_row("[red]failed[/]" if summary.failed else "failed", str(len(summary.failed)), "")
    for name, reason in summary.failed:
        table.add_row("", "", f"[red]{escape(name)}[/]: {escape(reason)}")
    table.add_row("modalities", str(len(summary.modalities)), escape(", ".join(summary.modalities)))
    c = summary.captions
    if c is not None:
        table.add_row("captions", str(c.calls + c.cache_hits),
                      f"{c.calls} model call(s) in {c.seconds:.1f} s, {c.cache_hits} from the cache, {c.unusable} "
                      f"unusable (refusals, empty); {c.prompt_tokens} + {c.completion_tokens} tokens")
    console.print(table)
    if summary.failed:
        raise SystemExit(1)  # typer.Exit is swallowed by click in standalone_mode=False


def _expander(v: dict, cfg: dict):
    """The query expander the search options ask for (None without --expand); the model loads on the first query."""
    if v["expand"] in (None, "none"):
        given = [f for f, n in (("--expand-n", "expand_n"), ("--expand-fusion", "expand_fusion"),
                                ("--expand-template", "expand_template")) if v[n] is not None]
        if given:
            raise ParameterError(f"{', '.join(given)} go(es) with --expand q2e|hyde|lamer")
        return None
    opts = dict(cfg.get("expand_options") or {})
    if v["expand_fusion"] != cfg.get("expand_fusion"):  # the config's parameters belong to the config's method
        opts.pop("fusion_params", None)
    return build_expander(v["expand"], model=v["llm_model"], base_url=v["llm_base_url"], n=v["expand_n"],
                          template=v["expand_template"], fusion=v["expand_fusion"],
                          cache=True if v["llm_cache"] is None else v["llm_cache"], timeout=v["llm_timeout"],
                          retries=v["llm_retries"], concurrency=v["llm_concurrency"], **opts)


def config_modalities(index: Any, cfg: dict[str, Any]) -> list[str] | None:
    """The modalities a ``--config`` file selects for searching ``index`` (a folder or an open store): its enabled
    built-in retrievers that the index holds (None: every one it holds). A retriever the file names but the index
    lacks is left out with a warning; the built-ins the file does not name are defaults, so an index without them is
    not a mistake. An index that cannot be opened is the searcher's to report: the modalities go through as they are."""
    mods = split_csv(cfg.get("modalities")) if cfg else None
    if not mods:
        return None
    if isinstance(index, IndexStore):
        have = index.specs()
    else:
        try:
            with IndexStore.open(index) as store:
                have = store.specs()
        except MmfuseError:
            return mods
    keep = [m for m in mods if any(h == m or h.startswith(f"{m}_") for h in have)]
    for m in mods:
        if m not in keep and m in (cfg.get("modalities_named") or ()):
            warn(f"[retrievers] {m}: index {getattr(index, 'path', index)} has no {m} modality; searching without it")
    return keep or None


def open_searcher(index: Any, v: dict[str, Any], cfg: dict[str, Any], *, fusion: str | None,
                  modalities: list[str] | None, depth: int | None = None) -> Pipeline:
    """The pipeline ``mmfuse search`` runs (and ``mmfuse serve`` keeps): ``index`` a folder or an open store, ``v``
    the options (aggregation, pooling, CLIP/CLAP overrides, query expansion, trusted plug-ins), ``cfg`` the flat
    ``--config`` values. Each retriever contributes ``depth`` (else the config's depth, else 100) candidates, or
    ``k`` when a search asks for more."""
    clip = clap = None
    if (v["clip_model"] or v["clip_checkpoint"]) and (not modalities or "visual" in modalities):
        clip = load_encoder("clip", v["clip_model"], pretrained=v["clip_pretrained"], checkpoint=v["clip_checkpoint"],
                            lazy=True)
    if v["clap_model"] and (not modalities or "audio" in modalities):
        clap = load_encoder("clap", v["clap_model"], lazy=True)
    # The config's [fusion] norm, params and depth go with its method (not with another one named by --fusion).
    # Its weights are per configured retriever, which need not match the modalities this index answers with.
    extra: dict = {}
    if cfg and fusion == cfg.get("fusion"):
        if cfg.get("fusion_norm"):
            extra["norm"] = cfg["fusion_norm"]
        extra.update(cfg.get("fusion_params") or {})
        if cfg.get("fusion_weights"):
            warn("[fusion] weights are not applied by `mmfuse search`/`serve` (the modalities an index answers with "
                 "vary); use mmfuse.Pipeline for weighted fusion")
    return searcher(index, fusion=fusion, modalities=modalities, aggregation=v["aggregation"], pooling=v["pooling"],
                    clip_encoder=clip, clap_encoder=clap, depth=depth or cfg.get("depth") or 100, fusion_params=extra,
                    expand=_expander(v, cfg), plugins=v["retriever"])


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    query: Optional[str] = typer.Argument(None, help="Text query (or --queries FILE for a batch)."),
    index: Optional[str] = typer.Option(None, "--index", help="Index directory built by `mmfuse index`."),
    queries: Optional[str] = typer.Option(None, "--queries", help="Batch: query file, TSV 'qid<TAB>text' or JSON {qid: text}."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Batch: fused run to write (.trec, .parquet or .json)."),
    per_modality_dir: Optional[str] = typer.Option(None, "--per-modality-dir", help="Batch: also write each retriever's run here (NAME.trec)."),
    k: int = typer.Option(10, "--k", parser=Int(min=1), help="Videos to return per query."),
    depth: Optional[int] = typer.Option(None, "--depth", parser=Int(min=1),
                                        help="Candidates each retriever contributes to fusion (default max(k, 100))."),
    fusion: Optional[str] = typer.Option(None, "--fusion", parser=Checked(get_method),
                                         help="Fusion method (default: the library default)."),
    per_modality: bool = typer.Option(False, "--per-modality", help="Also print each modality's own list."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    modalities: Optional[str] = typer.Option(None, "--modalities", parser=Csv(), help="Comma-separated subset of modalities."),
    aggregation: str = typer.Option("max", "--aggregation", parser=Choice(AGGREGATIONS),
                                    help="Segment -> video: max, mean, sum, topn."),
    pooling: str = typer.Option("mean", "--pooling", parser=Choice(POOLINGS), help="Frame pooling: mean, max, softmax, maxsim."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="Override the CLIP model recorded in the index."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained"),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint"),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="Override the CLAP model recorded in the index."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
    expand: Optional[str] = typer.Option(None, "--expand", parser=Choice(("none", *EXPAND_METHODS)),
                                         help="Expand queries with a language model: q2e | hyde | lamer "
                                              "(none: not even when --config says so)."),
    expand_n: Optional[int] = typer.Option(None, "--expand-n", parser=Int(min=1, max=20),
                                           help="Sub-queries (q2e) or passages (hyde, lamer) per query."),
    expand_fusion: Optional[str] = typer.Option(None, "--expand-fusion", parser=Checked(get_method),
                                                help="Fusion of each retriever's q2e sub-query lists (e.g. entropy)."),
    expand_template: Optional[str] = typer.Option(None, "--expand-template", help="Prompt template file for --expand."),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url",
                                               help="OpenAI-compatible server (env MMFUSE_LLM_BASE_URL, OPENAI_BASE_URL)."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model",
                                            help="Served model name, or a local model folder (env MMFUSE_LLM_MODEL)."),
    llm_cache: Optional[str] = typer.Option(None, "--llm-cache", help="Answer cache (default ~/.cache/mmfuse/llm; '' = none)."),
    llm_timeout: float = typer.Option(60.0, "--llm-timeout", parser=Float(min=0, open_min=True), help="Seconds per request."),
    llm_retries: int = typer.Option(2, "--llm-retries", parser=Int(min=0), help="Retries on timeouts, 429 and 5xx."),
    llm_concurrency: int = typer.Option(4, "--llm-concurrency", parser=Int(min=1), help="Requests in flight at once."),
    retriever: list[str] = typer.Option([], "--retriever", help="Plug-in the index names that may be imported: "
                                        "module:Class or entry-point name (repeatable)."),
) -> None:
    """Search an index: one query, or a batch of queries written as run files.

    One query prints the fused ranking with each retriever's rank and score per hit; a batch (--queries) writes
    run files that `mmfuse eval`, `bench` and `rerank` read. With --expand, a language model rewrites each query and
    every retriever also searches with its answers (runs named e.g. asr@q2e)."""
    batch = queries is not None
    if batch == (query is not None):
        raise ParameterError("give one QUERY, or --queries FILE for a batch" + (" (not both)" if batch else ""))
    cfg = load_config_defaults(config, "search")  # read once: flags below, and the [fusion] settings further down
    v = apply_defaults(ctx, locals(), cfg)
    index = required(v["index"], "--index", "[index] path")
    k, fusion, modalities = (v[n] for n in ("k", "fusion", "modalities"))
    if batch and output is None:
        raise ParameterError("--queries needs -o/--output FILE for the fused run")
    if not batch and (output is not None or per_modality_dir is not None):
        raise ParameterError("-o/--output and --per-modality-dir go with --queries FILE (batch search)")
    mods = split_csv(modalities)
    if ctx.params.get("modalities") is None and mods:  # from the config file, not from --modalities
        mods = config_modalities(index, cfg)
    pipe = open_searcher(index, v, cfg, fusion=fusion, modalities=mods, depth=depth)
    if batch:
        texts = load_queries(queries)
        with progress_bar(TextColumn("[bold]searching"), BarColumn(), MofNCompleteColumn(), TextColumn("queries"),
                          TimeElapsedColumn()) as bar:
            task = bar.add_task("search", total=len(texts))
            res = pipe.run(texts, k, progress=lambda d, t, label: bar.update(task, completed=d, total=t),
                           batch_size=256)
        for w in res.warnings:
            warn(w)
        if res.expansion is not None:
            err_console.print(res.expansion.summary(), highlight=False, soft_wrap=True)
        res.final.with_name("fused").write(output, tag=f"mmfuse-{res.fusion}")
        written = [output]
        if per_modality_dir is not None:
            d = Path(per_modality_dir)
            if d.exists() and not d.is_dir():
                raise ParameterError(f"--per-modality-dir {d}: exists and is not a folder")
            d.mkdir(parents=True, exist_ok=True)
            for r in res.runs:
                path = d / f"{r.name}.trec"
                r.write(path, tag=r.name)
                written.append(str(path))
            if res.expansion is not None:  # what the model answered, and the prompt that asked it
                path = d / "expansion.json"
                with atomic_write(path) as fh:
                    json.dump(res.expansion.as_dict(), fh, indent=1, ensure_ascii=False)
                written.append(str(path))
        answered = int((res.final.counts() > 0).sum())
        err_console.print(f"searched {len(texts)} queries ({answered} with results) with {len(res.runs)} retrievers, "
                          f"fused with {res.fusion}: wrote {', '.join(written)}", highlight=False, soft_wrap=True)
        return
    res = pipe.run({"q": query}, k)
    for w in res.warnings:
        warn(w)
    doc = res.as_dict("q", per_modality=per_modality, k=k)
    if json_out:
        typer.echo(json.dumps(doc, indent=1))
        return
    if res.expansion is not None:
        err_console.print(res.expansion.summary(), highlight=False, soft_wrap=True)
        for t in doc["expansion"]["texts"]:
            err_console.print(f"  {escape(t)}", highlight=False, soft_wrap=True)
    names = [r.name for r in res.runs]
    codes = short_names(names)
    table = narrow_table(escape(f"{query!r}: fused ({res.fusion})"),
                         escape(f"per retriever: rank, then score ({legend(codes)})"))
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("video", overflow="fold", ratio=1)
    table.add_column("score", justify="right", no_wrap=True)
    for m in names:
        table.add_column(escape(codes[m]), justify="right", no_wrap=True)
    for h in doc["hits"]:
        cells = []
        for m in names:
            x = h["modalities"].get(m)
            cells.append(f"{x['rank']}\n{x['score']:.3g}" if x else "-")
        table.add_row(str(h["rank"]), escape(h["video_id"]), f"{h['score']:.4g}", *cells)
    console.print(table)
    if per_modality:
        for m, lst in doc["per_modality"].items():
            if not lst:
                console.print(f"{escape(m)}: no hits", highlight=False)
                continue
            t = narrow_table(escape(m))
            for c in ("#", "video", "score", "segment", "time"):
                t.add_column(c, no_wrap=c != "video", overflow="fold",
                             justify="right" if c in ("#", "score") else "left")
            t.add_column("text", overflow="fold", ratio=1)
            for e in lst:
                span = f"{e['start']:.1f}-{e['end']:.1f}s" if "start" in e else ""
                t.add_row(str(e["rank"]), escape(e["video_id"]), f"{e['score']:.4g}",
                          escape(str(e.get("segment_id", ""))), span, escape((e.get("text") or "")[:60]))
            console.print(t)
