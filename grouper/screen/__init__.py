"""Screen wing: fund supervision screens (医保智能监管) over a grouped year.

One entry function per stage:

- `screens.load_screens`     read and validate a screens file (TOML; errors at file:line:column, as a policy)
- `run.load_cases`           the grouped year, with doctor, phone and address from it or from the case file
- `run.screen`               every rule over the year: findings, units, money at stake, rankings, scores
- `run.write_screening`      the output folder
- `plant.plant_anomalies`    labelled anomalies in a synthetic history, to measure the screens

`schema` holds the screens file's keys and the catalogue of logics; `rules` the logics themselves
(Polars expressions); `privacy` the keyed hash of personal fields.
"""
