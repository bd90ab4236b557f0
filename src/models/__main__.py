"""python -m src.models: every arch (`arch=`), its depths and the layer names `layer=` accepts
(`extensions=[mypkg.ext]` adds the families a module of yours registers; `arch=<name>`: one family's rows).

With a model library's arch, its tappable layers: `python -m src.models arch=timm arch.model=resnet18` prints each
graph node's output shape and, for the blocks `layer=depth:<fraction>` chooses among, their relative depth
(`--all` adds every other graph node; any of them is a valid `layer=`).
"""

import sys

from src.errors import ConfigError


def list_model(overrides: list[str], show_all: bool) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import src
    from src.models.backbones import describe, parse_ref
    from src.models.registry import get_arch

    with initialize_config_dir(str(src.REPO_ROOT / "conf")):
        cfg = compose_or_refuse(compose, overrides)
    from src.registry import import_extensions

    import_extensions(cfg.get("extensions"))  # a family of the user's own (extensions=[mypkg.ext])
    arch = get_arch(cfg.arch.name)
    if not arch.configured:  # its layers per depth (a family of an extension is not in the plain table)
        from src.models.registry import layer_table

        for row in layer_table():
            if row["arch"] == arch.name:
                print(f"{row['arch']:12} depth {str(row['depth']):>3}  {row['layers']}")
        return
    spec = arch.spec(None, 1.0, 1000, cfg.arch, cfg.paths.cache_dir)
    desc = describe(parse_ref(arch.name, OmegaConf.to_container(cfg.arch, resolve=True)),
                    OmegaConf.to_container(cfg.arch, resolve=True), cfg.paths.cache_dir)
    blocks = list(spec.blocks)
    modules = set(desc["modules"])
    print(f"{spec.extra['label']}  input {spec.extra['input']['size']}px  "
          f"{len(blocks)} blocks (depth:<fraction> picks block i of n at (i + 1) / n)")
    print(f"{'layer':40} {'output (per image)':>20}  {'kind':8} depth")
    aliases: dict[str, list[str]] = {}  # node -> the names that point at it (pre_logits, logits, arch.aliases)
    for name in [*(cfg.arch.get("aliases") or {}), "pre_logits", "logits"]:
        if name in spec.vocab:
            aliases.setdefault(spec.vocab[name][0], []).append(str(name))
    for node, shape in desc["nodes"]:
        if node not in spec.vocab:
            continue
        is_block = node in blocks
        if not (show_all or is_block or node in aliases or node in modules):
            continue
        kind = "tokens" if node in spec.tokens else "map" if len(shape) == 3 else "vector"
        depth = f"{(blocks.index(node) + 1) / len(blocks):.3f}" if is_block else ""
        name = f"{node} ({', '.join(aliases[node])})" if node in aliases else node
        print(f"{name:40} {'x'.join(map(str, shape)):>20}  {kind:8} {depth}")


def compose_or_refuse(compose, overrides: list[str]):
    """The config, or Hydra's error as the one line `python -m src.main` prints for it (a bad `arch=`: the valid
    archs) instead of its traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from src.errors import one_line

    try:
        return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e)) from None


def main(argv: list[str]) -> None:
    if argv and all(a.startswith("extensions=") for a in argv):  # the table, with the user's families
        from src.registry import import_extensions

        try:
            for arg in argv:
                import_extensions(arg.split("=", 1)[1])
        except ConfigError as e:
            sys.exit(f"error: {e}")
        argv = []
    if argv:
        try:
            list_model([a for a in argv if a != "--all"], "--all" in argv)
        except ConfigError as e:
            sys.exit(f"error: {e}")
        return
    from src.models.registry import layer_table

    for row in layer_table():
        print(f"{row['arch']:12} depth {str(row['depth']):>3}  {row['layers']}")


if __name__ == "__main__":
    main(sys.argv[1:])
