"""Keys the schema does not know, refused. Hydra's `+key=value` adds a key even to a structured
config (`python -m runner +lrr=0.1` would train at the default lr and log a param `lrr`): every
key of the composed config must be a field of the schema (runner.config) of the node it sits in.
`hydra.` keys never reach the composed config; Hydra checks those itself."""
import difflib
from dataclasses import fields, is_dataclass
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

from runner.errors import UserError


def check_known(cfg: DictConfig) -> None:
    """Raise UserError naming the first unknown key and the closest known one."""
    unknown: List[str] = []
    known: List[str] = []
    _walk(cfg, "", unknown, known)
    if not unknown:
        return
    key = unknown[0]
    elsewhere = _options_with(key)
    if elsewhere:
        raise UserError(f"{key}: unknown key here; it applies to {elsewhere}")
    others = [f"{g}.{k}" for g, options in _group_schemas().items() for keys in options.values() for k in keys]
    close = difflib.get_close_matches(key, known + sorted(set(others) - set(known)), n=1, cutoff=0.6)
    where = f" ({_options_with(close[0])})" if close and close[0] not in known else ""
    hint = f"; did you mean {close[0]}{where}?" if close else ""
    raise UserError(f"{key}: unknown key{hint} (the keys are the schema's: runner/config.py)")


def _walk(node: DictConfig, prefix: str, unknown: List[str], known: List[str]) -> None:
    schema = OmegaConf.get_type(node)
    allowed = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in node.keys():
        dotted = f"{prefix}{key}"
        if allowed is not None and key not in allowed:
            unknown.append(dotted)
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and allowed is not None:
            _walk(child, f"{dotted}.", unknown, known)
        else:
            known.append(dotted)


def _options_with(dotted: str) -> str:
    """`optim.momentum` on gd: 'optim=sgd, minibatch' (the group options whose schema has it)."""
    group, _, key = dotted.partition(".")
    if "." in key or not key:
        return ""
    options = _group_schemas().get(group, {})
    return ", ".join(f"{group}={name}" if i == 0 else name
                     for i, name in enumerate(n for n, keys in options.items() if key in keys))


def _group_schemas() -> Dict[str, Dict[str, Any]]:
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo.get("schema", {})
    return {group: {name.removesuffix(".yaml"): set(node.node.keys()) for name, node in options.items()}
            for group, options in repo.items() if isinstance(options, dict)}
