"""xitt: how the size of a pretrained multilingual encoder changes what English
intermediate-task training (ITT) does for cross-lingual transfer, measured by F1."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra configs live beside the package in the repository (the project is installed
# editable), so code outside the entry points can find them.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class XittError(Exception):
    """A problem the user can fix: its message names the problem and the fix, in one
    paragraph, and is shown without a traceback."""
