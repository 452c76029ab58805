"""`python -m veil_tools.demo` (`make demo`): the whole product once, on the embedded default.

It starts the three services on loopback (veil_tools.localrun, fresh state under
`<out>/demo/var`), generates synthetic faces at the model's size, uploads them through the
gateway and has the unlearner train a small published classifier on a manifest of them, then
plays one session through veil.client (level 5 protecting Male, 4 candidates a round: MORE_PRIVACY,
LESS_PRIVACY, ACCEPT), takes one real photo (scikit-image's astronaut) through a session of its
own (every face anonymized, each charged), waits for the unlearning job the first release
triggers and for the original's deletion, and writes

- `<out>/demo/contact_sheet.png`: original | candidates per round (labelled with their eps and
  the answer they got) | accepted;
- `<out>/demo/photo.png`: the real photo: original | candidates (face boxes drawn) | release;
- `<out>/demo/report.json`: eps per round, the release with its receipt, charged and composed eps
  and the ledger, model versions before and after, the training and unlearning jobs, the
  evaluation of the new version against its parent, the audit trail, the services' metrics and
  the time each step took.
"""
