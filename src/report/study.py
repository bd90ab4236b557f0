"""What a sweep's own Hydra record says about it: the command line and composed config, and the study's `report:`
settings (conf/experiment/*.yaml: `report.primary`, the finding the study is designed to test, and
`report.min_seeds`, the source seeds a verdict needs).

Read from the sweep dir's multirun.yaml (Hydra writes it when a multirun starts), else from a job's
.hydra/config.yaml; `python -m src.report --primary/--min-seeds` override them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from src.record import FINDING_IDS


@dataclass
class Study:
    primary: str | None = None
    min_seeds: int = 0  # 0: the report's own floor (src.report.stats.MIN_SEEDS)
    source: str = "none"  # where the settings came from


def _config(sweep_dir: Path):
    from omegaconf import OmegaConf

    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        return OmegaConf.load(multirun), multirun
    job = next((p for p in sorted(sweep_dir.rglob(".hydra/config.yaml"))), None)
    return (OmegaConf.load(job), job) if job else (None, None)


def check_primary(primary: str | None, where: str) -> str | None:
    if primary in (None, "null", ""):
        return None
    if primary not in FINDING_IDS:
        raise SystemExit(f"error: {where} report.primary={primary!r} is unknown; valid: {', '.join(FINDING_IDS)}")
    return primary


def read_study(dirs: list[Path], primary: str | None = None, min_seeds: int | None = None) -> Study:
    """The first sweep dir's `report:` settings, with the command line's on top."""
    from omegaconf import OmegaConf

    study = Study()
    for d in dirs:
        cfg, path = _config(Path(d))
        if cfg is None:
            continue
        report = OmegaConf.select(cfg, "report", default=None)
        if report is not None:
            study = Study(check_primary(OmegaConf.select(report, "primary", default=None), str(path)),
                          int(OmegaConf.select(report, "min_seeds", default=0) or 0), str(path))
        break
    if primary is not None:
        study.primary, study.source = check_primary(primary, "--primary"), "command line"
    if min_seeds is not None:
        if min_seeds < 1:
            raise SystemExit(f"error: --min-seeds={min_seeds} must be a positive integer")
        study.min_seeds = min_seeds
    return study


def sweep_record(sweep_dir: Path) -> tuple[str, str]:
    """(command line, composed config as YAML) from Hydra's multirun.yaml, or a job's .hydra/ for single runs."""
    from omegaconf import OmegaConf

    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        cfg = OmegaConf.load(multirun)
        task = list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or [])
        params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
        cmd = "python -m src.main -m " + " ".join(shlex.quote(str(o)) for o in task)
        if params:
            cmd += "\n# sweeper params: " + " ".join(f"{k}={v}" for k, v in params.items())
        cfg.pop("hydra", None)
        return cmd, OmegaConf.to_yaml(cfg)
    job = next((p.parent for p in sorted(sweep_dir.rglob(".hydra/config.yaml"))), None)
    if job is None:
        return "(no Hydra record in this directory)", ""
    overrides = OmegaConf.load(job / "overrides.yaml") if (job / "overrides.yaml").exists() else []
    cmd = "python -m src.main " + " ".join(shlex.quote(str(o)) for o in overrides)
    return cmd, (job / "config.yaml").read_text()
