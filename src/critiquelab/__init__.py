"""critiquelab: Critique Fine-Tuning (CFT) from data to report.

Stages (one module each, handing off through files in one run directory):
world -> pretrain -> sample -> critique -> build -> train -> evaluate -> report.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
