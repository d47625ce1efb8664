"""Example images shipped with the package (see README for credits and licences)."""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
CONTENT = _HERE / "chelsea.jpg"  # "Chelsea the cat", Stefan van der Walt, CC0 (from scikit-image)
STYLE = _HERE / "starry_night.jpg"  # Vincent van Gogh, The Starry Night (1889), public domain
