"""Classical-vision prompt-adherence evaluation of shapes videos (color, shape, direction, temporal
consistency) and PSNR. Entry points: ``evaluate_video``, ``evaluate_arrays``, ``evaluate_folder``,
``main`` (the ``eval shapes`` command)."""
