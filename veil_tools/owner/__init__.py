"""A simulated data owner: drives the gateway's feedback loop with an attacker of its own.

- attacker: the owner's attribute classifier (logistic regression on pixels, trained on clean
  synthetic faces of identities the model never saw; cached on disk).
- policy: what the owner answers to one round (accept a candidate, more or less privacy).
- play: one probe face through the real gateway (upload, session, rounds, accept).
- `python -m veil_tools.owner`: the probes under several controller settings -> one JSON that
  `python -m veil_tools.report` turns into the report's owner section.
"""
