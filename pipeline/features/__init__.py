"""Stage 1, raw video -> I3D features: decoding (:mod:`.video`, :mod:`.decode`), the networks and their
weights (:mod:`.i3d`, :mod:`.inception`, :mod:`.weights`), the runtimes (:mod:`.runtimes`), the
extractor (:mod:`.extractor`), the feature store and its records (:mod:`.featstore`,
:mod:`.reproduce`), per-video jobs and where they run (:mod:`.jobs`, :mod:`.backends`,
:mod:`.raybackend`). Imports :mod:`pipeline.common` only.
"""
