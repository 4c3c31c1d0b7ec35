"""Generated data with known truth: feature datasets in the field's formats (:mod:`.features`),
videos with planted events (:mod:`.videos`) and ``python -m pipeline.synth`` (:mod:`.cli`). Imports
common, features and model.
"""
