"""Regional CHS-DRG table sets (细分组): the extra columns regions need, and import as an overlay.

A regional table set has the national appendix layout (see chs_drg.py) plus, all optional:
- in `drg.csv`: `los_min`, `los_max` (length of stay, days, inclusive), `age_min`, `age_max` (years,
  inclusive), `dept` (department codes, `;`-separated: one of them), `procs_all` (procedure codes,
  `;`-separated: every one of them somewhere in the procedure list). A DRG's condition is its
  `split` (mcc / cc_or_mcc / none) and every extra column that is filled.
- `settings.csv` (`setting,value`): scheme settings, e.g. `adrg_without_drg,no_drg`; the row
  `read_sex,1:male;2:female` makes those the only accepted spellings of sex (`read sex ...`).

`import_overlay` imports such a set and writes an overlay of a base pack that states only the
differences (tables as +/- patches, groups, qy rules and invalid/warn checks as replace/add/remove/
move/rename operations), so that
grouping with the overlay gives exactly what grouping with the standalone import gives (tested).
"""
from __future__ import annotations

import dataclasses
from collections import Counter
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl

from ..lang import ast
from ..lang.parse import parse_file
from ..lang.printer import cond_text, scheme_text
from ..lang.settings import SETTINGS
from ..lang.tables import TableStore
from ..outputs import atomic_output
from .tables import DRG_COLUMNS, SETTINGS_TABLE, ImportError_, drg_extra_condition, with_regional_columns  # noqa: F401

# ---- import as an overlay: differences only ----------------------------------------------------
def _lcs(a: list[str], b: list[str]) -> set[str]:
    """Items of the longest common subsequence of two lists of distinct codes (they keep their place)."""
    m, n = len(a), len(b)
    table = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m - 1, -1, -1):
        for j in range(n - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    keep, i, j = set(), 0, 0
    while i < m and j < n:
        if a[i] == b[j]:
            keep.add(a[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return keep


def _position(order: list[str], code: str, parent: str | None) -> ast.Position:
    """After the item before `code` in the final order, else first (in the parent)."""
    i = order.index(code)
    return ast.Position("after", order[i - 1]) if i else ast.Position("first", parent)


def _bare(node):
    """A group without children, for comparing its own name and condition."""
    if isinstance(node, ast.MdcDef):
        return dataclasses.replace(node, items=())
    if isinstance(node, ast.AdrgDef):
        return dataclasses.replace(node, drgs=())
    return node


def _replace(kind: str, old, new) -> list[ast.Statement]:
    if _bare(old) == _bare(dataclasses.replace(new, code=old.code)):
        return []
    name = new.name if new.name != old.name else None
    cond = new.cond if new.cond != old.cond else None
    if kind == "drg" and cond is None and new.cond != old.cond:  # the DRG became unconditional
        cond = ast.Always()
    return [ast.ReplaceGroup(kind, old.code, name, cond)]


class _Differ:
    """Operations that turn the base scheme's hierarchy into the region's."""

    def __init__(self, base: ast.Scheme, region: ast.Scheme, base_store: TableStore | None = None,
                 region_store: TableStore | None = None):
        self.base, self.region = base, region
        self.base_store, self.region_store = base_store, region_store
        self.ops: list[ast.Statement] = []

    def same_lists(self, old: str, old_node: ast.AdrgDef, new: str, node: ast.AdrgDef) -> bool:
        """Whether the table rows the two ADRGs' conditions select are the same but for the ADRG's
        own code: a renumbering keeps its lists; a removed and an added ADRG with other codes in
        them are two changes (the old content may have moved to another ADRG), not a rename."""
        if self.base_store is None or self.region_store is None:
            return True
        return _selected_rows(self.base_store, old_node.cond, old) == _selected_rows(self.region_store, node.cond, new)

    def drgs(self, adrg: str, old: tuple[ast.DrgDef, ...], new: tuple[ast.DrgDef, ...]) -> list[ast.Statement]:
        if old == new:
            return []
        old_codes, new_codes = [d.code for d in old], [d.code for d in new]
        renames: dict[str, str] = {}
        if len(old) == len(new):   # same place, new code: a renumbering
            renames = {o.code: n.code for o, n in zip(old, new)
                       if o.code != n.code and o.code not in new_codes and n.code not in old_codes}
        ops: list[ast.Statement] = []
        old_by = {renames.get(d.code, d.code): d for d in old}
        for d in old:
            if renames.get(d.code, d.code) not in new_codes:
                ops.append(ast.RemoveGroup("drg", d.code))
        for o, n in renames.items():
            new_node = next(d for d in new if d.code == n)
            ops.append(ast.RenameGroup("drg", o, n, new_node.name if new_node.name != old_by[n].name else None))
            old_by[n] = dataclasses.replace(old_by[n], name=new_node.name)
        kept_order = [c for c in (renames.get(c, c) for c in old_codes) if c in new_codes]
        keep = _lcs(kept_order, new_codes)
        for d in new:
            if d.code in keep:
                ops += _replace("drg", old_by[d.code], d)
            elif d.code in old_by:
                ops += [ast.MoveGroup("drg", d.code, _position(new_codes, d.code, adrg))]
                ops += _replace("drg", old_by[d.code], d)
            else:
                ops.append(ast.AddGroup(d, _position(new_codes, d.code, adrg)))
        if len(ops) >= len(new):   # most of the list changes: state the new list whole
            return [ast.RefineDef(adrg, new)]
        return ops

    def hierarchy(self) -> list[ast.Statement]:
        base_mdcs = {m.code: m for m in self.base.mdcs}
        region_mdcs = {m.code: m for m in self.region.mdcs}
        base_adrgs = {a.code: (m.code, a) for m in self.base.mdcs for a in m.adrgs}
        region_adrgs = {a.code: (m.code, a) for m in self.region.mdcs for a in m.adrgs}
        # renumbered ADRGs: gone under one code, new under another, same MDC and condition (but for the code)
        renames: dict[str, str] = {}
        for code, (mdc, node) in region_adrgs.items():
            if code in base_adrgs:
                continue
            for old, (old_mdc, old_node) in base_adrgs.items():
                if (old not in region_adrgs and old not in renames and old_mdc == mdc
                        and cond_text(old_node.cond).replace(f'"{old}"', f'"{code}"') == cond_text(node.cond)
                        and self.same_lists(old, old_node, code, node)):
                    renames[old] = code
                    break
        ops: list[ast.Statement] = []
        for code in base_adrgs:
            if code not in region_adrgs and code not in renames:
                ops.append(ast.RemoveGroup("adrg", code))
        for old, new in renames.items():
            node = region_adrgs[new][1]
            ops.append(ast.RenameGroup("adrg", old, new, node.name if node.name != base_adrgs[old][1].name else None))
        base_adrgs = {renames.get(c, c): (m, dataclasses.replace(n, code=renames.get(c, c), name=region_adrgs[renames[c]][1].name
                                                                 if c in renames else n.name))
                      for c, (m, n) in base_adrgs.items()}
        # MDCs: new ones (with their ADRGs when all are new), order, entry and name
        region_order = [m.code for m in self.region.mdcs]
        keep = _lcs([c for c in base_mdcs if c in region_mdcs], region_order)
        for mdc in self.region.mdcs:
            if mdc.code not in base_mdcs:
                all_new = all(a.code not in base_adrgs for a in mdc.adrgs)
                block = mdc if all_new else dataclasses.replace(mdc, items=())
                ops.append(ast.AddGroup(block, _position(region_order, mdc.code, None)))
                continue
            if mdc.code not in keep:
                ops.append(ast.MoveGroup("mdc", mdc.code, _position(region_order, mdc.code, None)))
            ops += _replace("mdc", base_mdcs[mdc.code], mdc)
        # ADRGs of each MDC: moved in, reordered, new; then their own changes and DRGs
        for mdc in self.region.mdcs:
            if mdc.code not in base_mdcs and all(a.code not in base_adrgs for a in mdc.adrgs):
                continue
            order = [a.code for a in mdc.adrgs]
            staying = [a.code for a in base_mdcs[mdc.code].adrgs] if mdc.code in base_mdcs else []
            staying = [renames.get(c, c) for c in staying]
            keep = _lcs([c for c in staying if c in order], order)
            for adrg in mdc.adrgs:
                if adrg.code not in base_adrgs:
                    ops.append(ast.AddGroup(adrg, _position(order, adrg.code, mdc.code)))
                    continue
                if adrg.code not in keep:
                    ops.append(ast.MoveGroup("adrg", adrg.code, _position(order, adrg.code, mdc.code)))
                old = base_adrgs[adrg.code][1]
                ops += _replace("adrg", old, adrg)
                ops += self.drgs(adrg.code, old.drgs, adrg.drgs)
        for code in base_mdcs:
            if code not in region_mdcs:
                ops.append(ast.RemoveGroup("mdc", code))
        return ops + self.qys(ops, ImportError_)

    def qys(self, ops: list[ast.Statement], error) -> list[ast.Statement]:
        """qy rules into their places, after the other operations: the base with those applied is
        walked item by item against the region (top level, then each MDC); a qy rule out of place
        is moved right after the item before it in the region (or added, or removed), one that
        differs is restated (`replace qy`). Refused when an operation cannot name its rule
        (two qy rules of one code at one place) or the result is not the region's order."""
        from ..lang.overlay import _Merger

        merger = _Merger(self.base, ast.Scheme(self.base.header, ()))
        out: list[ast.Statement] = []

        def emit(op) -> None:
            merger.apply(op)
            out.append(op)

        def key(node) -> tuple:
            return type(node).__name__, node.code

        for op in ops:
            merger.apply(op)
        region_top = [st for st in self.region.statements if isinstance(st, (ast.MdcDef, ast.QyDef))]
        places = [(None, region_top), *((m.code, list(m.items)) for m in self.region.mdcs)]
        for within, items in places:
            parent = merger.qy_parent(within, None)
            wanted = {key(i) for i in items}
            for child in [c for c in parent.children if isinstance(c.node, ast.QyDef) and key(c.node) not in wanted]:
                emit(ast.RemoveGroup("qy", child.node.code, within=within))
            for i, item in enumerate(items):
                if not isinstance(item, ast.QyDef):
                    continue   # the other operations put MDCs and ADRGs in the region's order already
                keys = [key(c.node) for c in parent.children]
                spot = keys.index(key(items[i - 1])) + 1 if i else 0
                if spot >= len(keys) or keys[spot] != key(item):
                    position = ast.Position("after", items[i - 1].code) if i else ast.Position("first", within)
                    if key(item) in keys:
                        emit(ast.MoveGroup("qy", item.code, position, within=within))
                    else:
                        emit(ast.AddGroup(item, position))
                        continue
                    spot = [key(c.node) for c in parent.children].index(key(items[i - 1])) + 1 if i else 0
                if parent.children[spot].node != item:
                    emit(ast.ReplaceQy(item, within))
            got = [key(c.node) for c in parent.children]
            if merger.found or got != [key(i) for i in items] or any(
                    c.node != i for c, i in zip(parent.children, items) if isinstance(i, ast.QyDef)):
                extra = Counter(got) - Counter(key(i) for i in items)
                problem = (merger.found[0].message if merger.found else
                           f"{Counter(got)[next(iter(extra))]} qy rules {next(iter(extra))[1]} there cannot be told "
                           f"apart by an operation" if extra else "the operations do not give the region's order")
                raise error(f"the region changes ambiguous-group (QY) rules {'in ' + within if within else 'at the top level'} "
                            f"in a way an overlay cannot state ({problem}): import it as a standalone pack")
        return out


def _table_filters(cond) -> list[ast.TableFilter]:
    """The table filters a condition reads, in order (defines are compared by name elsewhere)."""
    if isinstance(cond, ast.TableFilter):
        return [cond]
    if isinstance(cond, (ast.AnyOf, ast.AllOf)):
        return [f for item in cond.items for f in _table_filters(item)]
    if isinstance(cond, ast.Negation):
        return _table_filters(cond.item)
    return _table_filters(cond.set) if hasattr(cond, "set") else []


def _selected_rows(store: TableStore, cond: ast.Cond, code: str) -> list:
    """Per table filter of an ADRG's condition: its rows, the ADRG's own code blanked, sorted."""
    out = []
    for f in _table_filters(cond):
        frame = store.filtered(f)
        frame = frame.with_columns(pl.col(c).replace(code, "") for c in frame.columns)
        out.append((f.table, sorted(frame.rows(), key=lambda row: tuple(v or "" for v in row))))
    return out


def _table_rows(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False, encoding="utf8")


def _patch(base: pl.DataFrame, region: pl.DataFrame) -> pl.DataFrame | None:
    """+/- rows turning base into region (as multisets of rows), or None if the columns differ."""
    if base.columns != region.columns:
        return None
    columns = base.columns
    count = lambda frame: frame.group_by(columns, maintain_order=True).len("n")  # noqa: E731
    joined = count(base).join(count(region), on=columns, how="full", nulls_equal=True, coalesce=True,
                              suffix="_region", maintain_order="left_right")
    joined = joined.with_columns(pl.col("n").fill_null(0), pl.col("n_region").fill_null(0)).filter(
        pl.col("n") != pl.col("n_region"))
    # `-` removes every equal row, so a row whose count changed is removed and added back n times
    removed = joined.filter(pl.col("n") > 0).select(pl.lit("-").alias("op"), *columns)
    added = joined.filter(pl.col("n_region") > 0).select(pl.lit("+").alias("op"), *columns, "n_region")
    added = added.select(pl.exclude("n_region").repeat_by(pl.col("n_region")).explode()) if added.height else added.drop("n_region")
    return pl.concat([removed, added])


def import_overlay(region_dir: str | Path, base_pack: str | Path, out_dir: str | Path, *, name: str,
                   version: str | None = None, with_maps: bool = False, allow_unused: bool = False,
                   unused: list[str] | None = None, warnings: list[str] | None = None) -> Path:
    """Import the regional table set and write `out_dir/scheme.grp`, an overlay of `base_pack`
    holding only what differs, plus the patch and table files it names. Returns the scheme path.
    The other arguments are those of `import_chs_drg` (which imports the set standalone first)."""
    from ..scheme import parse_pack, scheme_path
    from .chs_drg import import_chs_drg

    region_dir, out_dir = Path(region_dir), Path(out_dir)
    base_path = scheme_path(base_pack)
    base, _ = parse_pack(base_path)
    # the standalone import in a scratch folder; the overlay pack appears whole or not at all
    with tempfile.TemporaryDirectory() as tmp, atomic_output(out_dir, directory=True, kind="DRG pack") as pack:
        pack.chmod(0o755)                                  # mkdtemp makes it private
        standalone = import_chs_drg(region_dir, Path(tmp) / "standalone", name=name, version=version,
                                    with_maps=with_maps, allow_unused=allow_unused, unused=unused,
                                    warnings=warnings)
        region = parse_file(standalone)
        version = region.header.version
        statements: list[ast.Statement] = []
        base_tables = {t.name: t for t in base.tables}
        for table in region.tables:
            path = standalone.parent / table.file
            old = base_tables.get(table.name)
            if old is None:
                shutil.copyfile(path, pack / table.file)
                statements.append(table)
                continue
            old_path = Path(old.span.file).parent / old.file if old.span else base_path.parent / old.file
            if old.patches or old.key_column != table.key_column:
                patch = None
            elif old_path.read_bytes() == path.read_bytes():
                continue
            else:
                patch = _patch(_table_rows(old_path), _table_rows(path))
            if patch is not None and patch.height < _table_rows(path).height:
                file = f"{table.name}.patch.csv"
                patch.write_csv(pack / file)
                statements.append(ast.PatchTable(table.name, file))
            else:
                shutil.copyfile(path, pack / table.file)
                statements.append(ast.ReplaceDef(table))
        for kind in (ast.DictionaryDef, ast.SetDef, ast.DefineDef, ast.ReadSex, ast.ReadEmptyNumber, ast.ReadEmptyList,
                     ast.ValidateDef, ast.MapDef, ast.WeightsDef, ast.SettingDef):
            statements += _definitions(kind, base, region, ImportError_)
        statements += check_operations(base, region)
        base_store = TableStore(base_path.parent, base.tables)
        region_store = TableStore(standalone.parent, region.tables)
        statements += _Differ(base, region, base_store, region_store).hierarchy()
        base_ref = base_path.parent if base_path.name == "scheme.grp" else base_path
        header = ast.Header(name, version, os.path.relpath(base_ref.resolve(), out_dir.resolve()))
        overlay = ast.Scheme(header, tuple(statements))
        text = (f"# {name} {version}: generated by `grouper import chs-drg {region_dir.name} --base ...` — only the\n"
                f"# differences from the base pack. Operations apply in file order (README \"Regional variants\").\n\n"
                + scheme_text(overlay))
        (pack / "scheme.grp").write_text(text, encoding="utf-8")
    return out_dir / "scheme.grp"


def check_operations(base: ast.Scheme, region: ast.Scheme) -> list[ast.Statement]:
    """invalid/warn checks of the region from the base's: removed, moved (the longest common order
    stays), added in place (`add ... after` the check before it) and restated (`replace`)."""
    out: list[ast.Statement] = []
    for kind, word in ((ast.InvalidDef, "invalid"), (ast.WarnDef, "warn")):
        old = {st.name: st for st in base.of_type(kind)}
        new = [st.name for st in region.of_type(kind)]
        out += [ast.RemoveGroup(word, name) for name in old if name not in new]
        keep = _lcs([name for name in old if name in new], new)
        for i, st in enumerate(region.of_type(kind)):
            position = ast.Position("after", new[i - 1]) if i else ast.Position("first", None)
            if st.name not in old:
                out.append(ast.AddGroup(st, position))
                continue
            if st.name not in keep:
                out.append(ast.MoveGroup(word, st.name, position))
            if old[st.name] != st:
                out.append(ast.ReplaceDef(st))
    return out


def _key(st) -> str:
    return getattr(st, "name", None) or getattr(st, "kind", None) or getattr(st, "reason", None) or type(st).__name__


def _definitions(kind, base: ast.Scheme, region: ast.Scheme, error) -> list[ast.Statement]:
    """Region definitions of one kind that the base lacks (declared) or has otherwise (replaced)."""
    known = {_key(st): st for st in base.of_type(kind)}
    out: list[ast.Statement] = []
    for st in region.of_type(kind):
        old = known.get(_key(st))
        if old is None or kind is ast.SettingDef:
            if old is None or old.value != st.value:
                out.append(st)
        elif old != st:
            if kind in (ast.SetDef, ast.DefineDef):
                out.append(ast.ReplaceDef(st))
            else:
                raise error(f"the region's {_key(st)} differs from the base's, and an overlay cannot replace a "
                            f"{kind.__name__[:-3].lower()}: import the region as a standalone pack")
    for st in base.of_type(ast.SettingDef) if kind is ast.SettingDef else ():
        if st.name not in {s.name for s in region.of_type(ast.SettingDef)} and st.value != SETTINGS[st.name].default:
            out.append(ast.SettingDef(st.name, SETTINGS[st.name].default))   # the region keeps the default
    return out
