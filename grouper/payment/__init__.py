"""Payment wing: settlement fields, synthetic cost history, relative weights, homogeneity, hospital metrics.

One entry function per stage (all return Polars frames):

It builds on two core modules that settlement and DIP share: `grouper.fields` (the settlement
fields of the input, typed, carried into grouped results) and `grouper.grouped.read_grouped` (the
one reader of grouped files).

- `history.synth_history`      a seeded synthetic cost history for a scheme (documented as synthetic)
- `weights.calibrate_weights`  relative weights (RW) per DRG from a grouped history
- `homogeneity.homogeneity`    RIV, CV and merge/split candidates of a grouped history
- `metrics.hospital_metrics`   CMI, cost/time indices, low-risk mortality ... per hospital and department
"""
