"""Small data the package ships: a real, truncated SuperNI sample, a sample of every other OPT-IML Bench format
tiny model configs, and the config.json (no weights) of the study models, for planning memory offline."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
SUPERNI_SAMPLE_DIR = ASSETS_DIR / "superni"
OPT_IML_SAMPLE_DIR = ASSETS_DIR / "opt_iml_sample"
TINY_MODELS_DIR = ASSETS_DIR / "tiny_models"
HUB_CONFIGS_DIR = ASSETS_DIR / "hub_configs"
TINY_TOKENIZER_DIR = ASSETS_DIR / "tiny_tokenizer"
