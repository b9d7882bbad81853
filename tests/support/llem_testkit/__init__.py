"""Helpers shared by llem's unit and integration tests (importable via pytest's ``pythonpath``).

``studies``: write a study YAML and load it or expect its error; ``cli``: run ``llem`` as a
subprocess and inspect what it wrote; ``results`` and ``runners``: results as the harness would
write them, and a runner that writes them; ``traces``: power traces of static prefill/decode
batches.
"""
