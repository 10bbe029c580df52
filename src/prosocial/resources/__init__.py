"""Files shipped inside the package: example dialogues and the offline default models."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
EXAMPLES = RESOURCES / "examples"
PAPER_TABLES = EXAMPLES / "paper_tables_6_7.direct.json"
