"""Benchmark plots (matplotlib, Agg backend, PNG): R@1 per method and subset, gain over the best single retriever,
latency vs R@1, and the default method's sensitivity curve."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mmfuse.errors import InputError
from mmfuse.fusion import default_method
from mmfuse.utils.files import atomic_path

from .report import is_default, label, sensitivity
from .sweep import Result

__all__ = ["plot_all", "KEY_METHODS"]

# (method, norm, params) shown in the per-subset plots: the classical baselines and the default
KEY_METHODS = [("combsum", "min-max", ()), ("combsum", "zmuv", ()), ("rrf", None, (("k", 60),)),
               ("combmnz", "min-max", ()), ("entropy", "min-max", None), ("sef", "none", None),
               ("auto", "none", None)]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _pick(res: Sequence[Result], method, norm, params, sub):
    cands = [r for r in res if r.config.method == method and r.config.retrievers == sub
             and (norm is None or r.config.norm == norm)]
    if params is not None:
        cands = [r for r in cands if all(dict(r.config.params).get(k) == v for k, v in params)]
    elif method in ("sef", "auto"):  # their default parameters (sef's miss=0.25 is auto's too)
        cands = [r for r in cands if not r.config.params or is_default(r)
                 or dict(r.config.params).get("miss") == 0.25] or cands
    return max(cands, key=lambda r: r.metrics["R@1"]) if cands else None


def _name(method: str, r: Result | None) -> str:
    if method == default_method():
        return f"{method} (default)"
    return method if r is None or method == "sef" else label(r)


def _short(sub: tuple[str, ...]) -> str:
    return "+".join(s[:4] for s in sub)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_all(name: str, res: Sequence[Result], out_dir: str | Path) -> dict[str, str]:
    """Write the dataset's PNGs into ``out_dir``; returns {title: file name}."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out_dir}: cannot create plot directory ({e.strerror})") from None
    plt = _plt()
    res = list(res)
    files: dict[str, str] = {}
    singles = {r.config.retrievers[0]: r.metrics["R@1"] for r in res if r.config.method == "single"}
    subs = sorted({r.config.retrievers for r in res if len(r.config.retrievers) >= 2}, key=lambda s: (-len(s), s))

    # 1. R@1 per method and subset (heatmap)
    rows, labels = [], []
    for method, norm, params in KEY_METHODS:
        vals = [_pick(res, method, norm, params, s) for s in subs]
        if not any(vals):
            continue
        labels.append(_name(method, next(v for v in vals if v)))
        rows.append([v.metrics["R@1"] if v else float("nan") for v in vals])
    if rows and subs:
        import numpy as np

        arr = np.asarray(rows)
        fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(subs) + 3), 0.5 * len(rows) + 1.8))
        im = ax.imshow(arr, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(subs)), [_short(s) for s in subs], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                if arr[i, j] == arr[i, j]:
                    ax.text(j, i, f"{arr[i, j]:.3f}", ha="center", va="center", fontsize=7,
                            color="white" if arr[i, j] < np.nanmean(arr) else "black")
        fig.colorbar(im, ax=ax, label="R@1 (fraction of queries)")
        ax.set_title(f"{name}: R@1 per method and retriever subset")
        _save(fig, out_dir / f"{name}_r1_by_method.png")
        plt.close(fig)
        files["R@1 per method and subset"] = f"{name}_r1_by_method.png"

    # 2. gain over the best single retriever of each subset
    if subs and singles:
        import numpy as np

        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(subs) + 3), 3.6))
        width = 0.8 / max(len(KEY_METHODS), 1)
        for k, (method, norm, params) in enumerate(KEY_METHODS):
            g = []
            for s in subs:
                v = _pick(res, method, norm, params, s)
                best = max(singles.get(x, float("nan")) for x in s)
                g.append(v.metrics["R@1"] - best if v else float("nan"))
            if all(x != x for x in g):
                continue
            v0 = next((_pick(res, method, norm, params, s) for s in subs if _pick(res, method, norm, params, s)), None)
            ax.bar(np.arange(len(subs)) + (k - len(KEY_METHODS) / 2) * width + width / 2, g, width,
                   label=_name(method, v0))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(subs)), [_short(s) for s in subs], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("R@1 gain over best single (fraction)")
        ax.set_title(f"{name}: gain over the best single retriever")
        ax.legend(fontsize=7, ncol=2)
        _save(fig, out_dir / f"{name}_gain.png")
        plt.close(fig)
        files["Gain over the best single retriever"] = f"{name}_gain.png"

    # 3. latency vs R@1 on the full retriever set
    if subs:
        full = subs[0]
        pts = [r for r in res if r.config.retrievers == full]
        if pts:
            fig, ax = plt.subplots(figsize=(6.5, 4.2))
            methods = sorted({r.config.method for r in pts})
            cmap = plt.get_cmap("tab20")
            for i, m in enumerate(methods):
                rs = [r for r in pts if r.config.method == m]
                ax.scatter([r.ms_per_query for r in rs], [r.metrics["R@1"] for r in rs], s=18, color=cmap(i % 20),
                           label=m, marker="*" if m == default_method() else "o")
            ax.set_xscale("log")
            ax.set_xlabel("fusion time (ms per query, log)")
            ax.set_ylabel("R@1 (fraction of queries)")
            ax.set_title(f"{name}: latency vs R@1 ({len(full)} retrievers)")
            ax.legend(fontsize=7, ncol=2)
            _save(fig, out_dir / f"{name}_latency.png")
            plt.close(fig)
            files["Latency vs R@1"] = f"{name}_latency.png"

    # 4. sensitivity of the default
    param, curve = sensitivity(res)
    if curve:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        ax.plot([v for v, _ in curve], [s for _, s in curve], "o-", label="sef")
        cs = [r.metrics["R@1"] for r in res if r.config.method == "combsum" and subs and r.config.retrievers == subs[0]]
        if cs:
            ax.axhline(max(cs), color="gray", ls="--", label=f"best CombSUM {max(cs):.3f}")
        ax.set_xlabel(param)
        ax.set_ylabel("R@1 (fraction of queries)")
        ax.set_title(f"{name}: sef sensitivity to {param}")
        ax.legend(fontsize=8)
        _save(fig, out_dir / f"{name}_sensitivity.png")
        plt.close(fig)
        files["Sensitivity of the default"] = f"{name}_sensitivity.png"
    return files
