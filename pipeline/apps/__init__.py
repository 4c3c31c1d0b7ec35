"""What runs on new footage and studies, built on the three stages: detection in video files
(:mod:`.detection`), live cameras (:mod:`.stream`, :mod:`.watching`, :mod:`.alertclips`) and the
paper's ablation tables (:mod:`.ablation`). Imports common, features, model and scoring.
"""
