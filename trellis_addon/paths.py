"""Where the extension lives (its root folder is the worker's working directory)."""
import os

EXTENSION_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
