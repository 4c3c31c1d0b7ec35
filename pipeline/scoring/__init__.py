"""Stage 3, a checkpoint -> scores: loading it and scoring clip sequences (:mod:`.checkpoint`,
:mod:`.causal`), frame timelines and intervals (:mod:`.timeline`), evaluation (:mod:`.evaluation`),
plots and review pages (:mod:`.plots`, :mod:`.review`). Imports common, features and model.
"""
