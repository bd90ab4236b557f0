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
    # Where each setting came from (the sweep's record, or "command line"): the two can differ.
    primary_from: str = "none"
    min_seeds_from: str = "none"


def _config(sweep_dir: Path):
    from omegaconf import OmegaConf

    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        return OmegaConf.load(multirun), multirun
    job = next((p for p in sorted(sweep_dir.rglob(".hydra/config.yaml"))), None)
    return (OmegaConf.load(job), job) if job else (None, None)


def import_sweep_extensions(dirs: list[Path]) -> list[str]:
    """Import the modules each sweep's record lists in `extensions` (as every job did before its check), so that
    the report knows the entries they register: an arch of the user's own orders its layers (the layer questions'
    early and late layers, the plots' axes) as its jobs did. Returns one line per module that does not import here
    (the report goes on; that arch's layers are then ordered as named)."""
    from omegaconf import OmegaConf

    from src.errors import ConfigError
    from src.registry import extension_modules, import_extensions

    failed = []
    for d in dirs:
        cfg, path = _config(Path(d))
        for name in extension_modules(OmegaConf.select(cfg, "extensions", default=None) if cfg is not None else None):
            try:
                import_extensions([name])
            except ConfigError as e:
                failed.append(f"{e} (listed in {path}); the entries it registers are unknown to this report")
    return list(dict.fromkeys(failed))


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
                          int(OmegaConf.select(report, "min_seeds", default=0) or 0), str(path), str(path))
        break
    if primary is not None:
        study.primary, study.primary_from = check_primary(primary, "--primary"), "command line"
    if min_seeds is not None:
        if min_seeds < 1:
            raise SystemExit(f"error: --min-seeds={min_seeds} must be a positive integer")
        study.min_seeds, study.min_seeds_from = min_seeds, "command line"
    return study


def _verbatim(cfg, key: str):
    """A node of a Hydra record as it was written: `${...}` left as text (OmegaConf would resolve it on access,
    against the record's own top-level values, and `target.data.seed=${seed}` would read `target.data.seed=0`)."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(node, resolve=False) if node is not None else None


def _shell(args: list[str]) -> str:
    return "python -m src.main " + " ".join(shlex.quote(str(a)) for a in args)


def _replicates_note(task: list[str]) -> str | None:
    """The expansion of `replicates=N` (src.argv.expand_replicates), recognised so the short form can be named."""
    from src.argv import REPLICATES_ARG, expand_replicates

    seeds = next((o for o in task if o.startswith("seed=")), None)
    n = len(seeds.split("=", 1)[1].split(",")) if seeds else 0
    expanded = expand_replicates([f"{REPLICATES_ARG}{n}"])[:2] if n else []
    if expanded and all(o in task for o in expanded):
        return f"# {' '.join(map(shlex.quote, expanded))} is what {REPLICATES_ARG}{n} expands to"
    return None


def _without_models_expansion(task: list[str]) -> list[str]:
    """The overrides without the `arch.model=a,b` sweep that `arch.models=[a,b]` expanded to (src.argv.expand_models):
    pasted, the short form expands to it again, and the long form only repeats the list in shell quoting."""
    from src.argv import expand_models

    models = [o for o in task if o.lstrip("+").startswith("arch.models=")]
    if not models:
        return task
    try:
        expansion = expand_models([models[-1]])[-1]
    except Exception:  # noqa: BLE001  (a record this version does not expand the same way: show it as it is)
        return task
    return [o for o in task if o != expansion]


def _key(override: str) -> str:
    """An override's key as Hydra's basic sweeper compares them (`Override.get_key_element`: prefix, key and
    package, e.g. `+db@x`); the text before `=` when it does not parse alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([override])[0].get_key_element()
    except Exception:  # noqa: BLE001  (a syntax that needs the config loader, e.g. a glob: compare the text)
        return override.split("=", 1)[0]


def _not_overridden(params: dict, task: list[str]) -> dict:
    """The sweeper params the command line left alone: the basic sweeper appends the command line's overrides to
    its params and keeps the last value of each key (BasicSweeper.sweep and split_arguments, Hydra 1.4), so
    `target=a,b` on the command line replaces a config's `target` sweep."""
    given = {_key(o) for o in task}
    return {k: v for k, v in params.items() if _key(f"{k}={v}") not in given}


def sweep_command(cfg) -> str:
    """The command that ran a multirun, from its multirun.yaml: the overrides exactly as Hydra recorded them (the
    command line's, then its hydra.* ones; `hydra.mode=MULTIRUN` as `-m`), each quoted for a POSIX shell, so the
    text pasted into a shell runs the same sweep. The sweeper's own params (from the config, e.g. an
    experiment's) that the command line did not override, and the replicates=N short form, follow as comment
    lines."""
    task = [str(o) for o in _verbatim(cfg, "hydra.overrides.task") or []]
    hydra = [str(o) for o in _verbatim(cfg, "hydra.overrides.hydra") or [] if str(o) != "hydra.mode=MULTIRUN"]
    lines = [_shell(["-m", *_without_models_expansion(task), *hydra])]
    params = _not_overridden(_verbatim(cfg, "hydra.sweeper.params") or {}, task)
    if params:
        lines.append("# swept by the config's hydra.sweeper.params: "
                     + " ".join(shlex.quote(f"{k}={v}") for k, v in params.items()))
    note = _replicates_note(task)
    return "\n".join(lines + ([note] if note else []))


def sweep_record(sweep_dir: Path) -> tuple[str, str]:
    """(command line, composed config as YAML, both unresolved as Hydra saved them) from the sweep's
    multirun.yaml, or a job's .hydra/ for a single run."""
    import yaml
    from omegaconf import OmegaConf

    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        cfg = OmegaConf.load(multirun)
        cmd = sweep_command(cfg)
        cfg.pop("hydra", None)
        return cmd, OmegaConf.to_yaml(cfg)
    job = next((p.parent for p in sorted(sweep_dir.rglob(".hydra/config.yaml"))), None)
    if job is None:
        return "(no Hydra record in this directory)", ""
    overrides = yaml.safe_load((job / "overrides.yaml").read_text()) if (job / "overrides.yaml").exists() else []
    return _shell([str(o) for o in overrides or []]), (job / "config.yaml").read_text()
