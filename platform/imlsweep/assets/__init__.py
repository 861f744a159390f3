"""Small data the package ships: a real, truncated SuperNI sample and tiny model configs."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
SUPERNI_SAMPLE_DIR = ASSETS_DIR / "superni"
TINY_MODELS_DIR = ASSETS_DIR / "tiny_models"
TINY_TOKENIZER_DIR = ASSETS_DIR / "tiny_tokenizer"
