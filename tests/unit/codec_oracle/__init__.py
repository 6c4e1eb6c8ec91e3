"""The message codec as it was before issue 12 (commit c713fe8), kept verbatim as a test oracle.

`identifiers`, `messages`, `envelope` and `parse` are copies of those modules of
`contracts` at that commit, importing each other instead of the live ones. The
tests in `test_codec_oracle.py` hold the faster codec to exactly their decisions.
Never import this package outside tests.
"""
