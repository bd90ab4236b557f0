"""The command line before Hydra sees it (`python -m src.main ARGS`, and each worker of `src.search.workers`).

Hydra prints and saves the overrides and builds the sweeper before any job runs, so what must happen earlier
happens here, in one place:
  - an overlay that declares `hydra.mode: MULTIRUN` (`experiment=...`, `search=...`) makes the run a multirun;
  - a study storage URL loses its password (moved to PGPASSWORD: `src.storage_url`), its driver (and an SQLite
    file's directory) is checked, and its database server must answer;
  - `logger.tracking_uri=http(s)://...` must answer (a tracker given in a config file is checked by
    `src.tracking.check` before the job's work);
  - `arch.models=[a,b,...]` (experiment=model_selection) becomes a sweep over `arch.model=a,b,...`;
  - `replicates=N` becomes source seeds 0..N-1 with each job's target sample tied to its source seed;
  - every override parses as Hydra's grammar and a sweep's values can be listed (`seed=range(0,3,0)`);
  - sweeper and launcher settings Hydra would use before our config check runs (`hydra.sweeper.n_trials`,
    `hydra.launcher.n_jobs`; an Optuna search's directions against its objectives, on the config the command line
    composes) and the report's settings (`report.primary`, `report.min_seeds`, read when the sweep has ended) are
    checked;
  - `--plan` becomes `TRANSFER_PLAN_ONLY=1` (and a multirun): the launcher prints the sweep's plan (which stages
    are cached, which jobs build the rest, estimated times: `src.sweep_plan`) and nothing runs.
Every problem is a `ConfigError` with one line. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

from omegaconf import OmegaConf

import src
from src.errors import ConfigError
from src.patching import Guard
from src.schema import Int

OVERLAY_GROUPS = ("search", "experiment")
PLAN_FLAG = "--plan"
PLAN_ONLY = "TRANSFER_PLAN_ONLY"  # read by the launchers (hydra_plugins/transferfactors_plugins/staged.py)
N_TRIALS = Int(1, 100_000, "Optuna trials")
REPLICATES = Int(1, 1000, "source seeds (replicates=N: seeds 0..N-1)")


def overlay_multirun_args(argv: list[str]) -> list[str]:
    """Add `hydra.mode=MULTIRUN` when a chosen overlay (search=..., experiment=...) declares it.

    Hydra 1.4 only honours `hydra.mode` from the primary config or the command line, not from a config group,
    so `python -m src.main search=factors_tpe` would otherwise run a single job. The overlays keep
    `hydra.mode: MULTIRUN` (it documents them and agrees with this), and this makes it take effect.
    """
    if any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in argv):
        return argv
    for arg in argv:
        group, _, option = arg.partition("=")
        path = src.REPO_ROOT / "conf" / group / f"{option}.yaml"
        if group in OVERLAY_GROUPS and path.is_file():
            mode = OmegaConf.select(OmegaConf.load(path), "hydra.mode", default=None)
            if str(mode) == "MULTIRUN":
                return argv + ["hydra.mode=MULTIRUN"]
    return argv


# joblib's n_jobs: n workers, or a negative n for cores + 1 + n (-1: every core); 0 it refuses only once the sweep dir
# exists (`n_jobs == 0 in Parallel has no meaning`).
N_JOBS_VALID = "a positive integer, or a negative one for all cores but |n| - 1 (-1: every core)"


def check_sweeper_overrides(argv: list[str]) -> None:
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra.sweeper.n_trials":
            try:
                n = int(value)
            except ValueError:
                raise ConfigError(f"hydra.sweeper.n_trials={value!r} must be an integer; valid: "
                                  f"{N_TRIALS.valid()}") from None
            N_TRIALS.check(key, n)
        elif key == "hydra.launcher.n_jobs" and value != "null" and "${" not in value:  # (an interpolation: later)
            try:
                n = int(value)
            except ValueError:
                n = None
            if n is None or n == 0:
                raise ConfigError(f"{key}={value} is not a number of workers; valid: {N_JOBS_VALID}")


def check_override_syntax(argv: list[str]) -> None:
    """Each `key=value` parses as Hydra's override grammar, and a sweep's values can be listed, before Hydra (which
    would fail the same way, but once the sweep dir exists, or in a line holding its grammar's token list and
    every override)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import RangeSweep
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in _overrides(argv):
        try:
            override = parser.parse_overrides([arg])[0]
            # (the first value is enough: range(0, 4294967295) is not listed whole)
            empty = isinstance(override.value(), RangeSweep) and next(iter(override.sweep_iterator()), None) is None
        except OverrideParseException as e:
            raise ConfigError(f"{arg} is not a valid override: {_grammar_reason(str(e))} (the override grammar: "
                              f"https://hydra.cc/docs/advanced/override_grammar/basic)") from None
        except ValueError as e:  # a grammar function's own check, when its values are listed: range(0,3,0)
            raise ConfigError(f"{arg} is not a valid sweep: {e}") from None
        if empty:
            raise ConfigError(f"{arg} sweeps no values (a range is start, stop[, step] with start < stop for a "
                              f"positive step)")


# `_overrides` reads Hydra's private `hydra._internal.utils.get_args_parser`.
ARGS_GUARD = Guard("hydra_args", "hydra-core", ("1.4.0rc3",),
                   "overrides told from flags by their form (a flag's value holding '=' is then checked as one)")


def _overrides(argv: list[str]) -> list[str]:
    """The overrides of a command line, as Hydra's own argument parser splits them from its flags and their values
    (`-cd DIR=x`, `--cfg job`); where that parser cannot be had (`ARGS_GUARD`), the arguments that are not flags."""
    if ARGS_GUARD.allowed():
        try:
            from hydra._internal.utils import get_args_parser

            return list(get_args_parser().parse_known_args(argv)[0].overrides)
        except (ImportError, SystemExit, AttributeError):
            pass
    return [a for a in argv if not a.startswith("-") and "=" in a]


def _grammar_reason(text: str) -> str:
    """The parser's own sentence from Hydra's message (`extraneous input ','`), without the token list it expected
    and the lines around it (which repeat the whole command line and link the docs)."""
    frame = ("Error when parsing index", "Error parsing override", "See https://hydra.cc")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(frame)]
    return (lines[0] if lines else text).split(" expecting ")[0]


# What decides an Optuna search's settings and its objectives: the command line's overrides of these.
SEARCH_GROUPS = ("search", "experiment", "hydra/sweeper", "hydra/sweeper/sampler")
SEARCH_KEYS = ("objective", "hydra.sweeper.direction", "hydra.sweeper.sampler.")


def check_search_settings(argv: list[str]) -> None:
    """An Optuna search's settings that fail only once trials have run (a direction per objective: the sweeper
    plugin's `check_settings`), on the config these overrides compose, before Hydra writes the sweep dir. Hydra's
    callbacks cannot stop a multirun (it turns their errors into warnings), so this is the place."""
    from hydra import compose, initialize_config_dir

    from hydra_plugins.transferfactors_plugins.shared_study import check_settings

    def relevant(arg: str) -> bool:
        key = arg.lstrip("+~").partition("=")[0]
        return key in SEARCH_GROUPS or key.startswith(SEARCH_KEYS)

    chosen = [a for a in argv if relevant(a)]
    if not any(a.lstrip("+~").startswith(("search=", "hydra/sweeper=")) for a in chosen):
        return  # no Optuna sweeper chosen (the experiment presets sweep with Hydra's basic sweeper)
    try:
        with initialize_config_dir(str(src.REPO_ROOT / "conf"), job_name="check"):
            cfg = compose("config", overrides=chosen, return_hydra_config=True)
    except Exception:  # noqa: BLE001  (a bad override: Hydra reports it next, in its own line)
        return
    check_settings(cfg)


def check_services(argv: list[str]) -> None:
    """The tracking server and study database named on the command line answer (a short connection each)."""
    from src.services import check_http, check_tcp

    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "logger.tracking_uri" and value.startswith(("http://", "https://")):
            check_http(key, value, "start the server (mlflow server --host 127.0.0.1 --port 5000) or leave "
                                   "logger.tracking_uri=null for a local store in the sweep dir")
        elif key == "hydra.sweeper.storage" and value.startswith(("postgresql", "mysql")):
            check_tcp(key, value, 5432 if value.startswith("postgresql") else 3306,
                      "start the database server or fix the host and port (the password goes in PGPASSWORD)")


REPLICATES_ARG = "replicates="


def expand_replicates(argv: list[str]) -> list[str]:
    """`replicates=N` -> source seeds 0..N-1 with each job's target sample tied to its source seed.

    The report's replicate unit is the source seed (`seed`: source data, initialisation, batch order); tying
    `target.data.seed` to it gives every replicate a new target sample too, without crossing the two (a crossed
    seed x target-seed design spends jobs on target samples the report averages within a seed anyway). N >= 2 is a
    sweep, so it also asks for MULTIRUN. A study's yaml says how many seeds its verdicts need (`report.min_seeds`).
    """
    found = [a for a in argv if a.lstrip("+").startswith(REPLICATES_ARG)]
    if not found:
        return argv
    if len(found) > 1:
        raise ConfigError(f"replicates= is given {len(found)} times ({', '.join(found)}); give it once")
    value = found[0].lstrip("+")[len(REPLICATES_ARG):]
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or str(n) != value.strip():  # int() also takes '1_0' and '+3'
        raise ConfigError(f"replicates={value!r} must be an integer; valid: {REPLICATES.valid()}")
    REPLICATES.check("replicates", n)  # replicates=0 is out of range; valid: 1..1000
    clash = [a for a in argv if a.lstrip("+~").split("=", 1)[0] in ("seed", "target.data.seed")]
    if clash:
        raise ConfigError(f"replicates={n} sets seed and target.data.seed itself; drop {', '.join(clash)} "
                              f"(or drop replicates= and sweep the seeds by hand)")
    out = [a for a in argv if a is not found[0]]
    out += [f"seed={','.join(str(i) for i in range(n))}", "target.data.seed=${seed}"]
    multirun = any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in argv)
    return out + (["hydra.mode=MULTIRUN"] if n > 1 and not multirun else [])


def expand_models(argv: list[str]) -> list[str]:
    """`arch.models=[timm:resnet18,file:/w.safetensors]` -> the sweep `arch.model=timm:resnet18,file:/w.safetensors`
    (one job per backbone), kept as given too (it documents the study)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found = [a for a in argv if a.lstrip("+").startswith("arch.models=")]
    if not found:
        return argv
    value = OverridesParser.create().parse_override(found[-1].lstrip("+")).value()
    models = value if isinstance(value, list) else [value]
    if not models or not all(isinstance(m, str) and m for m in models):
        raise ConfigError(f"{found[-1]} must be a non-empty list of backbone references, e.g. "
                          f"arch.models=[timm:resnet18,torchvision:mobilenet_v3_small]")
    for i, m in enumerate(models):
        check_reference_syntax(f"arch.models[{i}]", m)
    if any(a.lstrip("+").startswith("arch.model=") for a in argv):
        raise ConfigError("arch.models=[...] sets arch.model for each job itself; drop arch.model=")
    quoted = ",".join("'" + m.replace("\\", "\\\\").replace("'", "\\'") + "'" for m in models)
    return argv + [f"arch.model={quoted}"]


def check_reference_syntax(key: str, text: str) -> None:
    """A backbone reference's form, before any job is planned (what its model is, and whether its weights fit,
    the config check finds out per job): a known library with a model name, or an existing file."""
    from src.models.refs import LIBRARIES

    library, sep, rest = text.partition(":")
    if library == "file" and sep and rest:
        if not Path(os.path.expanduser(rest)).is_file():
            raise ConfigError(f"{key}=file:{rest}: no such file")
    elif library not in LIBRARIES or not sep or not rest.partition("@")[0]:
        raise ConfigError(f"{key}={text!r} is not a backbone reference; valid: library:model[@weights] with library "
                          f"one of {', '.join(LIBRARIES)}, or file:/path/to/checkpoint")


MODEL_SELECTION = "experiment=model_selection"


def check_model_selection_target(argv: list[str]) -> None:
    """The model-selection study ranks backbones on the user's data: without `target=` it would rank them on the
    default synthetic target, minutes of work that answers nothing the user asked."""
    if MODEL_SELECTION in argv and not any(a.lstrip("+").startswith("target=") for a in argv):
        choices = sorted(p.stem for p in (src.REPO_ROOT / "conf" / "target").glob("*.yaml"))
        raise ConfigError(f"{MODEL_SELECTION} needs target= (your data: target=imagefolder target.root=DIR); "
                          f"valid: {', '.join(choices)}")


def check_report_args(argv: list[str]) -> None:
    """`report.primary=` / `report.min_seeds=` from the command line, checked before any job runs against their
    schema entries (the report reads them only when the sweep has ended)."""
    import yaml

    from src.schema import SCHEMA

    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key in ("report.primary", "report.min_seeds"):
            SCHEMA[key].check(key, yaml.safe_load(value))  # the value as Hydra's override parser types it


def plan_flag(argv: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """`--plan`: show the sweep's plan and run nothing. The launcher prints it once the sweeper has expanded the
    jobs (a single run is a sweep of one)."""
    if PLAN_FLAG not in argv:
        environ.pop(PLAN_ONLY, None)  # a stale value from a parent process never turns a run into a plan
        return argv
    environ[PLAN_ONLY] = "1"
    argv = [a for a in argv if a != PLAN_FLAG]
    for arg in argv:  # another launcher would start the jobs before one of them could refuse to run
        group, _, name = arg.lstrip("+").partition("=")
        if group == "hydra/launcher" and name not in plannable_launchers():
            raise ConfigError(f"--plan: hydra/launcher={name} cannot show a plan; valid: "
                              f"{', '.join(plannable_launchers())}")
    multirun = any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in argv)
    return argv if multirun else argv + ["hydra.mode=MULTIRUN"]


def plannable_launchers() -> list[str]:
    """The launchers that plan a sweep (`--plan`): this project's presets (conf/hydra/launcher/)."""
    return sorted(p.stem for p in (src.REPO_ROOT / "conf" / "hydra" / "launcher").glob("*.yaml"))


def prepare(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """`argv` (without the program name) checked and rewritten as described in the module docstring."""
    from src.storage_url import prepare_storage_args

    argv = plan_flag(argv, environ)
    check_override_syntax(argv)
    check_sweeper_overrides(argv)
    check_model_selection_target(argv)
    argv = expand_models(expand_replicates(overlay_multirun_args(argv)))
    check_search_settings(argv)
    check_report_args(argv)
    argv = prepare_storage_args(argv, environ)
    check_services(argv)
    return argv
