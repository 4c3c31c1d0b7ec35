"""Stage 2, features -> a trained clustering-guided GCN: the data contract (:mod:`.data`), the network
(:mod:`.network`), the losses (:mod:`.losses`), the clustering (:mod:`.clustering`), what training
measures (:mod:`.diagnostics`) and the training loop (:mod:`.training`). Imports
:mod:`pipeline.common` and :mod:`pipeline.features`.
"""
