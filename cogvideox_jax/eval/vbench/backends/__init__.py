"""Model backends for the VBench dimensions, behind the small interfaces of ``interfaces.py``."""
