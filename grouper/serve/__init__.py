"""`grouper serve`: pre-grouping during the stay (事前/事中) over HTTP, and a page for the coding desk.

- `grouper.serve.service`  the packs served (a `State`) and what is done with a JSON case: group,
                           explain, what-if, recommend, estimate — no HTTP
- `grouper.serve.cases`    the JSON shape of a case, into the project's one reader
- `grouper.serve.hsa`      the national 医保信息平台 envelope (infno 3101 / 3102)
- `grouper.serve.estimate` 预结算 of one case under a settlement policy, in Decimal
- `grouper.serve.app`      the HTTP application (Starlette): routes, limits, errors, metrics, reload
- `grouper.serve.commands` the `grouper serve` command (uvicorn)
"""
