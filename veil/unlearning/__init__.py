"""Published models that forget replaced originals: feature unlearning (DESIGN.md section 5).

Entry points (import from the submodules; this package imports nothing, so light users such as
the CLI's argument parser do not load torch):
- workflow.train / workflow.unlearn / workflow.compare: registry-level operations (what the CLI
  and the unlearner service call);
- registry.ModelRegistry, registry.PublishedModelCard: versioned checkpoints in the object store;
- manifest.Manifest, manifest.ReplacementPair, manifest.PinnedObject, manifest.read_pairs_csv;
- params.UnlearnParams; methods.update_model (the four methods on tensors);
- unlearner.FeatureUnlearner (first/second order), solvers (conjugate_gradient, lissa);
- evaluation.evaluate and its metrics; intervals.paired_bootstrap (a gap's interval).
"""
