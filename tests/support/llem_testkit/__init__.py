"""Helpers shared by llem's unit and integration tests (importable via pytest's ``pythonpath``).

``studies``: write a study YAML and load it or expect its error; ``cli``: run ``llem`` as a
subprocess and inspect what it wrote; ``traces``: power traces of static prefill/decode batches.
"""
