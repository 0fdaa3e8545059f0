"""Payment wing: money, stage by stage (fields → history → weights → metrics → policy → settle → impact).

It builds on two core modules that settlement and DIP share: `grouper.fields` (the settlement
fields of the input, typed, carried into grouped results) and `grouper.grouped.read_grouped` (the
one reader of grouped files).

- `history.synth_history`      a seeded synthetic cost history for a scheme (documented as synthetic)
- `weights.calibrate_weights`  relative weights (RW) per DRG from a grouped history
- `homogeneity.homogeneity`    RIV, CV and merge/split candidates of a grouped history
- `metrics.hospital_metrics`   CMI, cost/time indices, low-risk mortality ... per hospital and department
- `policy.load_policy`         a regional policy file (TOML) → a validated `Policy`
- `settle.settle`              grouped cases + a base-points source (a weights table, or DIP's scores)
                               → per-case, per-hospital, per-group and per-pool frames, with checks
- `settle.price_cases`         each case priced on its own by the same stages (预结算: `grouper serve`'s
                               estimates), without what needs the year's other cases
- `settle.CasePricer`          the same for one case at a time without a frame (the engine's rule
                               builders worked out on the case's values by `row_ops`; ~0.1 ms a case)
- `impact.compare`             two settlements → the change per hospital and group

`api.py` holds every stage's entry function (Polars frames in and out), `commands.py` the
commands (`synth history`, `metrics`, `calibrate weights`, `settle`), `console.py` their summaries.
"""
