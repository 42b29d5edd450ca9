"""VBench evaluation of the five dimensions in the CogVideoX paper's Table 1.

Human action, scene, dynamic degree, multiple objects and appearance style, scored with the rules of
VBench (Huang et al., CVPR 2024; https://github.com/Vchitect/VBench, Apache-2.0; vbench 0.1.5). The
prompt suites in ``data/`` are derived from VBench's ``VBench_full_info.json`` (see ``data/NOTICE``).

Layout: pure scoring rules per dimension (``human_action.py`` ... ``appearance_style.py``), frame
sampling (``frame_sampling.py``), VBench's two ways of averaging (``aggregation.py``), model backends
behind small interfaces (``backends/``), video discovery (``discovery.py``), results JSON and the
Table-1-shaped table (``results.py``), and the ``eval vbench`` entry point (``runner.py``).
"""
