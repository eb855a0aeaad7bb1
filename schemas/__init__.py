"""Wire contracts: a JSON Schema per topic, the Python types, the codec, command signing.

Modules: ``schemas.contracts`` (types), ``schemas.codec`` (decode/encode, dead letters),
``schemas.signing`` (control-command keys, signatures and the admission gate).
"""
