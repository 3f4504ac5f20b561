"""What the console commands share: resolving a configuration from a preset and a JSON file."""

from __future__ import annotations

from scn_tf.configs import ExperimentConfig, load_config, preset


def resolve_config(preset_name: str | None, config_file: str | None) -> ExperimentConfig:
    """The preset, overridden by the JSON file's keys; or the file alone when no preset is named."""
    if preset_name is None and config_file is None:
        raise ValueError("name a --preset or give a --config FILE.json")
    base = preset(preset_name) if preset_name else None
    return load_config(config_file, base) if config_file else base
