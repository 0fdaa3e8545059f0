"""Checked AST + tables → execution Plan (see ir.py for the layout)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .. import reasons
from ..errors import Diagnostic, SchemeError
from ..lang import ast
from ..lang.check import Names
from ..lang.printer import cond_text, set_text
from ..lang.settings import resolved
from ..lang.tables import TableStore
from . import ir


@dataclass(frozen=True)
class _Union:
    """A set the compiler makes for a gate: the union of other sets (never written in a scheme)."""

    parts: tuple


# Scopes whose items are items of a wider scope: a gate over the wider one is a necessary condition.
_WIDER_SCOPE = {"pdx": "dx", "dx": "dx", "secondary dx": "dx", "pproc": "proc", "proc": "proc", "secondary proc": "proc"}


def _set_source(expr) -> str:
    if isinstance(expr, _Union):
        return " | ".join(_set_source(p) for p in expr.parts)
    return set_text(expr)


class _Compiler:
    def __init__(self, scheme: ast.Scheme, store: TableStore):
        self.scheme = scheme
        self.store = store
        self.names = Names.of(scheme)
        self.sets: dict[ast.SetExpr, int] = {}         # resolved set expression → set index
        self.maps: dict[tuple, int] = {}                # (table, filters, column) → label map index
        self.labels: dict[str, int] = {}                # label text → label id (1-based)
        self.depts: dict[str, int] = {}
        self.program: list[tuple[int, int, int, int, int]] = []
        self.cond_start: list[int] = [0]
        self.cond_sources: list[str] = []
        self.max_depth = 0
        self.prefixes: list[str] = []                   # of the `prefix` sets (see ir.Plan.prefixes)
        self.plain = False                              # emit as written: no reordering, no jumps (register)

    # ---- registries ----------------------------------------------------------------------
    def set_index(self, expr: ast.SetExpr) -> int:
        if isinstance(expr, _Union):
            for part in expr.parts:
                self.set_index(part)  # built first, then OR-ed into the union (build_code_tables)
        key = self.names.resolve(expr)
        if key not in self.sets:
            self.sets[key] = len(self.sets)
        return self.sets[key]

    def map_index(self, table: str, filters: tuple, column: str) -> int:
        key = (table, tuple((f.column, f.op, f.value) for f in filters), column)
        if key not in self.maps:
            self.maps[key] = len(self.maps)
        return self.maps[key]

    def map_of_set(self, expr: ast.SetExpr, column: str) -> int:
        resolved = self.names.resolve(expr)
        if isinstance(resolved, ast.TableFilter):
            return self.map_index(resolved.table, resolved.filters, column)
        return self.map_index(resolved.name, (), column)

    def label_id(self, text: str) -> int:
        return self.labels.setdefault(text, len(self.labels) + 1)

    def dept_id(self, text: str) -> int:
        return self.depts.setdefault(text, len(self.depts) + 1)

    # ---- conditions ----------------------------------------------------------------------
    def condition(self, cond: ast.Cond, source: str) -> int:
        """Emit a condition's postfix program; return its index.

        Membership tests that must hold for the whole condition to hold (`pdx in X and ...`) become
        GATE instructions in front: most rules fail on them, with one bit test and no stack work.
        """
        field_gates, gates, rest = [], [], []
        for atom in self.conjuncts(cond):
            gateable = isinstance(atom, ast.OneIn) or (
                isinstance(atom, ast.ManyIn) and atom.quant == "any" and atom.unless is None)
            (field_gates if isinstance(atom, ast.FieldCmp) else gates if gateable else rest).append(atom)
        for atom in rest:
            union = self.union_gate(atom)
            if union is not None:
                gates.append(union)
        if not rest:
            rest = [ast.Always()]
        body = rest[0] if len(rest) == 1 else ast.AllOf(tuple(rest))
        self.register(gates, body)
        for atom in field_gates:  # one comparison: cheaper than any list scan (`age = 0 and ...` stops here)
            self.op(ir.OP_GATE_FIELD, ir.FIELD_IDS[atom.field], ir.CMP_IDS[atom.op], self.field_value(atom.field, atom.value))
        gates.sort(key=lambda atom: atom.scope not in ("pdx", "pproc"))  # one bit test before a list scan
        for atom in gates:
            self.op(ir.OP_GATE, ir.SCOPE_IDS[atom.scope], self.set_index(atom.set))
        depth = self.emit(body, 0)
        if depth > ir.MAX_STACK:
            raise SchemeError([Diagnostic("too-deep", "error", f"condition nests too deeply (stack {depth} > {ir.MAX_STACK})", cond.span)])
        self.cond_start.append(len(self.program))
        self.cond_sources.append(source)
        return len(self.cond_start) - 2

    def register(self, gates: list, body: ast.Cond) -> None:
        """Number the sets, maps, labels and departments of a condition in the order it is written
        (gates, then the rest), as a plain postfix emission would: the operands the compiler reorders
        then change no index, so the plan's tables stay those of the scheme as written (what
        `grouper synth history` draws from)."""
        program, self.program, self.plain = self.program, [], True
        try:
            for atom in gates:
                self.set_index(atom.set)
            self.emit(body, 0)
        finally:
            self.program, self.plain = program, False

    def union_gate(self, cond: ast.Cond) -> ast.ManyIn | None:
        """For `A or B or ...` where every alternative requires some item of one scope in a set (e.g.
        AH2's two rule rows each require a procedure in their list): a gate `any proc in (SA | SB)`.
        The alternatives are still evaluated in full; the gate only stops the cases that cannot match."""
        if isinstance(cond, ast.DefineRef):
            cond = self.names.define_cond(cond.name)
        if not isinstance(cond, ast.AnyOf):
            return None
        for wide in ("proc", "dx"):
            parts = []
            for alternative in cond.items:
                found = next((a.set for a in self.conjuncts(alternative)
                              if (isinstance(a, ast.OneIn) or (isinstance(a, ast.ManyIn) and a.quant == "any"
                                                               and a.unless is None))
                              and _WIDER_SCOPE[a.scope] == wide), None)
                if found is None:
                    break
                parts.append(self.names.resolve(found))
            else:
                return ast.ManyIn("any", wide, _Union(tuple(dict.fromkeys(parts))))
        return None

    def conjuncts(self, cond: ast.Cond) -> list[ast.Cond]:
        if isinstance(cond, ast.DefineRef):
            return self.conjuncts(self.names.define_cond(cond.name))
        if isinstance(cond, ast.AllOf):
            return [atom for item in cond.items for atom in self.conjuncts(item)]
        return [cond]

    def op(self, code, a=0, b=0, c=0, d=0):
        self.program.append((code, a, b, c, d))

    def emit(self, cond: ast.Cond, depth: int) -> int:
        """Emit `cond` with `depth` values already on the stack; return the peak stack depth."""
        if isinstance(cond, ast.Always):
            self.op(ir.OP_CONST, 1)
            return depth + 1
        if isinstance(cond, ast.DefineRef):
            return self.emit(self.names.define_cond(cond.name), depth)
        if isinstance(cond, (ast.AnyOf, ast.AllOf)):
            # Short-circuit: after each operand, a jump to the end when it decides the result (its value
            # stays on the stack), else the value is popped and the next operand decides. Cheap operands
            # first (the order of `and` / `or` operands cannot change their value). `plain`: as written.
            items = list(cond.items) if self.plain else sorted(cond.items, key=self.cost)
            if self.plain or self.cost(cond) == 0:  # field tests only: nothing to skip (the kernel checks them in bulk)
                joiner = ir.OP_OR if isinstance(cond, ast.AnyOf) else ir.OP_AND
                peak = self.emit(items[0], depth)
                for item in items[1:]:
                    peak = max(peak, self.emit(item, depth + 1))
                    self.op(joiner)
                return peak
            jump = ir.OP_JUMP_IF_TRUE if isinstance(cond, ast.AnyOf) else ir.OP_JUMP_IF_FALSE
            peak = self.emit(items[0], depth)
            jumps = []
            for item in items[1:]:
                jumps.append(len(self.program))
                self.op(jump)
                peak = max(peak, self.emit(item, depth))
            for at in jumps:
                self.program[at] = (jump, len(self.program) - at - 1, 0, 0, 0)
            return peak
        if isinstance(cond, ast.Negation):
            peak = self.emit(cond.item, depth)
            self.op(ir.OP_NOT)
            return peak
        if isinstance(cond, ast.OneIn):
            self.op(ir.OP_IN, ir.SCOPE_IDS[cond.scope], self.set_index(cond.set))
            return depth + 1
        if isinstance(cond, ast.ManyIn):
            scope, s = ir.SCOPE_IDS[cond.scope], self.set_index(cond.set)
            if cond.unless is None:
                self.op(ir.OP_IN, scope, s)
            else:
                u = cond.unless
                self.op(ir.OP_IN_UNLESS, scope, s, self.map_index(u.item_table, (), u.item_column),
                        self.map_index(u.pdx_table, (), u.pdx_column))
            if cond.quant == "no":
                self.op(ir.OP_NOT)
            return depth + 1
        if isinstance(cond, ast.CountLabels):
            self.op(ir.OP_COUNT, ir.SCOPE_IDS[cond.scope], self.map_of_set(cond.set, cond.column),
                    ir.CMP_IDS[cond.op], cond.value)
            return depth + 1
        if isinstance(cond, ast.CountItems):
            self.op(ir.OP_COUNT_ITEMS, ir.SCOPE_IDS[cond.scope], ir.CMP_IDS[cond.op], cond.value)
            return depth + 1
        if isinstance(cond, ast.TagsMatch):
            self.op(ir.OP_TAGSET, ir.SCOPE_IDS[cond.scope], self.map_of_set(cond.set, cond.column))
            return self.emit_tags(cond.expr, depth)
        if isinstance(cond, ast.FieldCmp):
            self.op(ir.OP_FIELD_CMP, ir.FIELD_IDS[cond.field], ir.CMP_IDS[cond.op], self.field_value(cond.field, cond.value))
            return depth + 1
        if isinstance(cond, ast.FieldRange):
            f = ir.FIELD_IDS[cond.field]
            self.op(ir.OP_FIELD_CMP, f, ir.GE, cond.low)
            self.op(ir.OP_FIELD_CMP, f, ir.LE, cond.high)
            self.op(ir.OP_AND)
            return depth + 2
        if isinstance(cond, ast.FieldIn):
            f = ir.FIELD_IDS[cond.field]
            for i, value in enumerate(cond.values):
                self.op(ir.OP_FIELD_CMP, f, ir.EQ, self.field_value(cond.field, value))
                if i:
                    self.op(ir.OP_OR)
            return depth + min(2, len(cond.values))
        if isinstance(cond, ast.FieldPresence):
            self.op(ir.OP_FIELD_PRESENT, ir.FIELD_IDS[cond.field])
            if not cond.present:
                self.op(ir.OP_NOT)
            return depth + 1
        raise TypeError(f"cannot compile {cond!r}")

    def cost(self, cond: ast.Cond) -> int:
        """A rough rank of what evaluating `cond` costs: a field comparison, one item's bit, a list scan."""
        if isinstance(cond, ast.DefineRef):
            return self.cost(self.names.define_cond(cond.name))
        if isinstance(cond, (ast.Always, ast.FieldCmp, ast.FieldRange, ast.FieldIn, ast.FieldPresence, ast.CountItems)):
            return 0
        if isinstance(cond, ast.OneIn):
            return 1
        if isinstance(cond, (ast.AnyOf, ast.AllOf)):
            return max(self.cost(item) for item in cond.items)
        if isinstance(cond, ast.Negation):
            return self.cost(cond.item)
        return 2

    def emit_tags(self, expr: ast.TagExpr, depth: int) -> int:
        if isinstance(expr, ast.Tag):
            self.op(ir.OP_HAS_TAG, self.label_id(expr.value))
            return depth + 1
        joiner = ir.OP_OR if isinstance(expr, ast.TagAny) else ir.OP_AND
        peak = self.emit_tags(expr.items[0], depth)
        for item in expr.items[1:]:
            peak = max(peak, self.emit_tags(item, depth + 1))
            self.op(joiner)
        return peak

    def field_value(self, field: str, value) -> int:
        if field == "dept":
            return self.dept_id(value)
        if field == "sex":
            return ir.SEX_NAMES.get(value, value)
        return value

    # ---- driver ----------------------------------------------------------------------------
    def compile(self) -> ir.Plan:
        s = self.scheme
        invalids = s.of_type(ast.InvalidDef)
        invalid_cond = [self.condition(r.cond, f"invalid {r.name}: {cond_text(r.cond)}") for r in invalids]
        warns = s.of_type(ast.WarnDef)
        warn_cond = [self.condition(r.cond, f"warn {r.name}: {cond_text(r.cond)}") for r in warns]
        dictionary_sets = {d.kind: self.set_index(ast.SetRef(d.table)) for d in self.names.dictionaries.values()}
        mdc_cond, mdc_adrg_start, adrg_cond, adrg_drg_start, drg_cond = [], [0], [], [0], []
        adrgs, drgs = [], []
        # qy rules: the top-level ones first (tried before the MDC that follows them), then those in MDCs.
        mdc_index = {m.code: i for i, m in enumerate(s.mdcs)}
        top_qys = [(st, None) for st in s.statements if isinstance(st, ast.QyDef)]
        mdc_qy_start, seen_qys = [0], 0   # rules before MDC m: mdc_qy_start[m]:mdc_qy_start[m + 1]
        for st in s.statements:
            if isinstance(st, ast.QyDef):
                seen_qys += 1
            elif isinstance(st, ast.MdcDef):
                mdc_qy_start.append(seen_qys)
        mdc_qy_start.append(len(top_qys))  # after the last MDC
        inner_qys, adrg_qy = [], []
        for mdc in s.mdcs:
            mdc_cond.append(self.condition(mdc.cond, _where(mdc, "mdc", mdc.cond)))
            for adrg in mdc.items:
                adrgs.append(adrg)
                if isinstance(adrg, ast.QyDef):
                    adrg_qy.append(len(top_qys) + len(inner_qys))
                    inner_qys.append((adrg, mdc.code))
                    adrg_cond.append(-1)  # filled in below, with the top-level rules' conditions
                    adrg_drg_start.append(len(drgs))
                    continue
                adrg_qy.append(ir.NOT_QY)
                adrg_cond.append(self.condition(adrg.cond, _where(adrg, "adrg", adrg.cond)))
                for drg in adrg.drgs:
                    drgs.append(drg)
                    drg_cond.append(ir.NO_CONDITION if drg.cond is None
                                    else self.condition(drg.cond, _where(drg, "drg", drg.cond)))
                adrg_drg_start.append(len(drgs))
            mdc_adrg_start.append(len(adrgs))
        qys = top_qys + inner_qys
        qy_cond = [self.condition(q.cond, _where(q, "qy", q.cond)) for q, _ in qys]
        for a, q in enumerate(adrg_qy):
            if q != ir.NOT_QY:
                adrg_cond[a] = qy_cond[q]
        qy_codes = list(dict.fromkeys(q.code for q, _ in qys))  # one group per code, after the DRGs
        qy_names = {}
        for q, _ in qys:
            qy_names.setdefault(q.code, q.name or "")
        qy_mdc = [mdc_index.get(q.mdc or enclosing, -1) for q, enclosing in qys]
        qy_drg = [len(drgs) + qy_codes.index(q.code) for q, _ in qys]

        settings = resolved(s)
        codes, set_bits, label_maps = self.build_code_tables()
        pdx_mdc_mask = self.pdx_mdc_mask(s.mdcs, set_bits, len(codes) + len(self.prefixes))
        i32 = lambda xs: np.ascontiguousarray(np.asarray(xs, dtype=np.int32))  # noqa: E731
        program = np.asarray(self.program, dtype=np.int32).reshape(-1, 5)
        adrg_gate_mask, adrg_gate_free = adrg_gates(program, self.cond_start, mdc_adrg_start, adrg_cond, set_bits,
                                                    len(codes) + len(self.prefixes))
        mdc_entry_exact = exact_entries(program, self.cond_start, mdc_cond, set_bits, pdx_mdc_mask)
        adrg_gate_class, adrg_gate_other, adrg_gate_rows = adrg_gate_classes(
            program, self.cond_start, adrg_cond + qy_cond[:len(top_qys)] + mdc_cond, set_bits,
            len(codes) + len(self.prefixes), pdx_mdc_mask)
        adrg_decision, decision_nodes, decision_atoms = drg_decisions(program, self.cond_start, adrg_drg_start, drg_cond,
                                                                      set_bits)
        return ir.Plan(
            name=s.header.name, version=s.header.version, codes=codes,
            depts=list(self.depts), labels=list(self.labels),
            set_bits=set_bits, label_maps=label_maps, program=np.ascontiguousarray(program),
            cond_start=i32(self.cond_start), invalid_cond=i32(invalid_cond),
            mdc_cond=i32(mdc_cond), mdc_adrg_start=i32(mdc_adrg_start),
            adrg_cond=i32(adrg_cond), adrg_drg_start=i32(adrg_drg_start), drg_cond=i32(drg_cond),
            invalid_names=[r.name for r in invalids], invalid_messages=[r.message or r.name for r in invalids],
            mdc_codes=[m.code for m in s.mdcs], mdc_names=[m.name or "" for m in s.mdcs],
            adrg_codes=[a.code for a in adrgs], adrg_names=[a.name or "" for a in adrgs],
            drg_codes=[d.code for d in drgs] + qy_codes, drg_names=[d.name or "" for d in drgs] + list(qy_names.values()),
            cond_sources=self.cond_sources,
            set_index={set_text(e): i for e, i in self.sets.items() if not isinstance(e, _Union)},
            map_index=dict(self.maps),
            warn_cond=i32(warn_cond), warn_names=[r.name for r in warns],
            warn_messages=[r.message or r.name for r in warns],
            validation={**{r.code: r.level for r in reasons.CATALOGUE.values()},
                        **{v.reason: v.level for v in s.of_type(ast.ValidateDef)}},
            code_maps={m.kind: dict(self.store.frame(m.table).select("from", "to").drop_nulls().iter_rows())
                       for m in s.of_type(ast.MapDef)},
            dictionary_sets=dictionary_sets,
            code_names=self.code_names(),
            drg_weights=self.drg_weights([d.code for d in drgs] + qy_codes),
            pdx_mdc_mask=pdx_mdc_mask, adrg_gate_mask=adrg_gate_mask, adrg_gate_free=adrg_gate_free,
            adrg_gate_class=adrg_gate_class, adrg_gate_other=adrg_gate_other, adrg_gate_rows=adrg_gate_rows,
            mdc_entry_exact=mdc_entry_exact,
            adrg_decision=adrg_decision, decision_nodes=decision_nodes, decision_atoms=decision_atoms,
            mdc_qy_start=i32(mdc_qy_start), qy_cond=i32(qy_cond), qy_mdc=i32(qy_mdc), qy_drg=i32(qy_drg),
            adrg_qy=i32(adrg_qy), qy_codes=[q.code for q, _ in qys],
            sex_spellings=next(({text: ir.SEX_NAMES[sex] for text, sex in r.spellings}
                                for r in s.of_type(ast.ReadSex)), None),
            sex_digits=any(r.digits for r in s.of_type(ast.ReadSex)),
            empty_numbers={f: r.value for r in s.of_type(ast.ReadEmptyNumber) for f in r.fields},
            empty_lists=tuple(r.scope for r in s.of_type(ast.ReadEmptyList)),
            prefixes=self.prefixes,
            set_sources=[_set_source(e) for e in self.sets],
            map_sources=[f"{t}[{', '.join(f'{c} {o} {v!r}' for c, o, v in f)}].{col}" for t, f, col in self.maps],
            settings=settings,
            behaviour=(ir.NO_DRG_STATUS if settings["adrg_without_drg"] == "no_drg" else 0)
            | (ir.SECOND_ATTEMPT if settings["second_attempt"] != "off" else 0)
            | (ir.ATTEMPT_ALONE if settings["second_attempt"] == "later_procedure_alone" else 0)
            | (ir.LAST_ENTERED if settings["ungrouped_mdc"] == "last_entered" else 0),
        )

    def pdx_mdc_mask(self, mdcs: list[ast.MdcDef], set_bits: np.ndarray, n_codes: int) -> np.ndarray | None:
        """Per code id, the MDCs whose entry can hold with that principal diagnosis (see ir.Plan);
        n_codes counts every id but 0 (prefix ids included)."""
        if len(mdcs) > 64:
            return None
        mask = np.zeros(n_codes + 1, dtype=np.uint64)
        for m, mdc in enumerate(mdcs):
            allowed = np.ones(n_codes + 1, dtype=bool)
            for atom in self.conjuncts(mdc.cond):
                if isinstance(atom, ast.OneIn) and atom.scope == "pdx":
                    bits = np.unpackbits(set_bits[self.set_index(atom.set)].view(np.uint8), bitorder="little")
                    allowed &= bits[:n_codes + 1].astype(bool)
            mask[allowed] |= np.uint64(1) << np.uint64(m)
        return mask

    def code_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for d in self.names.dictionaries.values():
            frame = self.store.frame(d.table)
            if "name" in frame.columns:
                key = self.store.key(d.table)
                names.update(frame.select(key, "name").drop_nulls().iter_rows())
        return names

    def drg_weights(self, codes: list[str]) -> list[float | None]:
        weights_def = self.scheme.of_type(ast.WeightsDef)
        if not weights_def:
            return [None] * len(codes)
        frame = self.store.frame(weights_def[-1].table)
        table = dict(frame.select("drg", pl.col("weight").cast(pl.Float64, strict=False)).iter_rows())
        return [table.get(code) for code in codes]

    def build_code_tables(self):
        """Intern every code the plan mentions, then build set bitmaps and label maps over the ids."""
        members = []  # (set index, code) for every set, joined to ids in one pass
        prefix_sets = []
        for s, expr in enumerate(self.sets):
            if isinstance(expr, _Union):
                continue  # OR-ed from its parts below
            if isinstance(expr, ast.PrefixSet):
                prefix_sets.append((s, expr))  # filled in once every code has its id
                continue
            if isinstance(expr, ast.InlineSet):
                codes = pl.Series("code", list(expr.codes), dtype=pl.String)
            else:
                key = self.store.key(expr.table if isinstance(expr, ast.TableFilter) else expr.name)
                codes = self.store.filtered(expr)[key].drop_nulls().rename("code")
            members.append(codes.to_frame().with_columns(pl.lit(s, pl.Int64).alias("set")))
        labelled = []  # (map index, code, label text)
        for m, (table, filters, column) in enumerate(self.maps):
            expr = ast.TableFilter(table, tuple(ast.Filter(c, o, v) for c, o, v in filters))
            labelled.append(self.store.filtered(expr)
                            .select(pl.col(self.store.key(table)).alias("code"), pl.col(column).alias("label"))
                            .drop_nulls().unique(subset="code", keep="first", maintain_order=True)
                            .with_columns(pl.lit(m, pl.Int64).alias("map")))
        members = pl.concat(members) if members else pl.DataFrame(schema={"code": pl.String, "set": pl.Int64})
        self.prefix_members: list[tuple[int, list[int]]] = []
        labelled = (pl.concat(labelled) if labelled
                    else pl.DataFrame(schema={"code": pl.String, "label": pl.String, "map": pl.Int64}))
        # Dictionary codes get ids too, so validation can tell "known but unused" from "unknown".
        dictionaries = [pl.Series("code", self.store.codes(ast.SetRef(d.table)), dtype=pl.String)
                        for d in self.names.dictionaries.values()]
        codes = pl.concat([members["code"], labelled["code"], *dictionaries]).unique().sort().to_list()
        # typed explicitly: a scheme naming no code at all would otherwise get a Null column (and joins fail)
        ids = pl.DataFrame({"code": pl.Series(codes, dtype=pl.String), "id": np.arange(1, len(codes) + 1, dtype=np.int64)})
        self.prefixes = sorted({p for _, expr in prefix_sets for p in expr.prefixes})
        for s, expr in prefix_sets:
            known = ids.filter(pl.any_horizontal(pl.col("code").str.starts_with(p) for p in expr.prefixes))["id"]
            unknown = [len(codes) + 1 + k for k, q in enumerate(self.prefixes) if q.startswith(expr.prefixes)]
            self.prefix_members.append((s, known.to_list() + unknown))
        n_ids = len(codes) + 1 + len(self.prefixes)

        n_words = (n_ids + 63) // 64
        set_bits = np.zeros((max(len(self.sets), 1), n_words), dtype=np.uint64)
        joined = members.join(ids, on="code", how="inner")
        set_index, member_ids = joined["set"].to_numpy(), joined["id"].to_numpy()
        for s, prefixed in self.prefix_members:
            set_index = np.concatenate([set_index, np.full(len(prefixed), s, dtype=set_index.dtype)])
            member_ids = np.concatenate([member_ids, np.asarray(prefixed, dtype=member_ids.dtype)])
        np.bitwise_or.at(set_bits, (set_index, member_ids >> 6),
                         np.left_shift(np.uint64(1), (member_ids & 63).astype(np.uint64)))
        for s, expr in enumerate(self.sets):
            if isinstance(expr, _Union):
                set_bits[s] = np.bitwise_or.reduce(set_bits[[self.sets[p] for p in expr.parts]], axis=0)

        label_maps = np.zeros((max(len(self.maps), 1), n_ids), dtype=np.uint32)
        joined = labelled.join(ids, on="code", how="inner")
        label_ids = {text: self.label_id(text) for text in joined["label"].unique(maintain_order=True).to_list()}
        label_maps[joined["map"].to_numpy(), joined["id"].to_numpy()] = (
            joined["label"].replace_strict(label_ids, return_dtype=pl.UInt32).to_numpy())
        return codes, set_bits, label_maps


def _where(node, kind: str, cond: ast.Cond) -> str:
    at = f" ({node.span})" if node.span else ""
    return f"{kind} {node.code}{at}: {cond_text(cond)}"


def compile_scheme(scheme: ast.Scheme, store: TableStore) -> ir.Plan:
    return _Compiler(scheme, store).compile()


def adrg_gates(program: np.ndarray, cond_start, mdc_adrg_start, adrg_cond, set_bits: np.ndarray,
               n_codes: int) -> tuple[np.ndarray | None, int]:
    """The MDC-level gate (see ir.Plan.adrg_gate_mask): per code id, the MDCs with an ADRG whose
    GATE set holds the code; and the MDCs with an ADRG without a GATE (always tested). A GATE makes
    its whole condition false when no item of its scope is in its set, so an ADRG can only hold when
    some code of the case is in one of its GATE sets; of several, the one with fewest codes is used."""
    n_mdc = len(mdc_adrg_start) - 1
    if n_mdc > 64:
        return None, 0
    gates = chosen_gates(program, cond_start, adrg_cond, set_bits)
    mask = np.zeros(n_codes + 1, dtype=np.uint64)
    free = 0
    for m in range(n_mdc):
        bit = np.uint64(1) << np.uint64(m)
        for a in range(mdc_adrg_start[m], mdc_adrg_start[m + 1]):
            if gates[a] is None:
                free |= 1 << m
                continue
            mask[set_codes(set_bits, gates[a][1], n_codes)] |= bit
    return mask, free


def exact_entries(program: np.ndarray, cond_start, mdc_cond, set_bits: np.ndarray, pdx_mdc_mask) -> int:
    """The MDCs whose entry is exactly `pdx in S` (program: GATE pdx S, then a true CONST) with
    pdx_mdc_mask's bit equal to membership in S for every code id, or `true` (a true CONST) with the
    bit set for every code id (see ir.Plan.mdc_entry_exact)."""
    if pdx_mdc_mask is None:
        return 0
    exact = 0
    for m, k in enumerate(mdc_cond):
        rows = program[cond_start[k]:cond_start[k + 1]]
        members = np.ones(len(pdx_mdc_mask), dtype=bool)
        if len(rows) == 1 and rows[0, 0] == ir.OP_CONST and rows[0, 1] != 0:
            pass
        elif (len(rows) != 2 or rows[0, 0] != ir.OP_GATE or rows[0, 1] != ir.PDX
                or rows[1, 0] != ir.OP_CONST or rows[1, 1] == 0):
            continue
        else:
            members[:] = False
            members[set_codes(set_bits, int(rows[0, 2]), len(pdx_mdc_mask) - 1)] = True
        if np.array_equal((pdx_mdc_mask >> np.uint64(m)) & np.uint64(1) == 1, members):
            exact |= 1 << m
    return exact


def chosen_gates(program: np.ndarray, cond_start, conds, set_bits: np.ndarray) -> list[tuple[int, int] | None]:
    """Per condition: the (scope, set) of its GATE with the fewest codes, or None (no GATE)."""
    popcount = set_sizes(set_bits)
    chosen = []
    for k in conds:
        rows = program[cond_start[k]:cond_start[k + 1]]
        gates = [(int(scope), int(s)) for scope, s in rows[rows[:, 0] == ir.OP_GATE, 1:3]]
        chosen.append(min(gates, key=lambda g: popcount[g[1]]) if gates else None)
    return chosen


def set_sizes(set_bits: np.ndarray) -> np.ndarray:
    """The number of codes in each set."""
    return np.unpackbits(set_bits.view(np.uint8), axis=1).sum(axis=1)


def set_codes(set_bits: np.ndarray, s: int, n_codes: int) -> np.ndarray:
    """The code ids (0..n_codes) in set s."""
    return np.flatnonzero(np.unpackbits(set_bits[s].view(np.uint8), bitorder="little")[:n_codes + 1])


# Item roles of the ADRG-level gate (ir.Plan.adrg_gate_class columns) and the roles a GATE's scope needs.
GATE_ROLES = {ir.PDX: (0,), ir.DX: (0, 1), ir.SDX: (1,), ir.PPROC: (2,), ir.PROC: (2, 3), ir.SPROC: (3,)}


def adrg_gate_classes(program: np.ndarray, cond_start, slot_conds, set_bits: np.ndarray, n_codes: int,
                      pdx_mdc_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[None, None, None]:
    """The ADRG-level gate (see ir.Plan.adrg_gate_class): slot t is condition slot_conds[t] (the
    ADRGs, then the top-level qy rules, then the MDC entries). Each slot's condition gives one GATE (a principal-item one
    if it has one, of those the set with the fewest codes): its codes get the slot in the roles its
    scope needs. Per code id and role, the slots form a bitmap (a principal diagnosis's also has
    its pdx_mdc_mask word after them); equal bitmaps share one row of adrg_gate_rows, whose row 0
    holds the slots without a GATE. Returns (adrg_gate_class, adrg_gate_other, adrg_gate_rows)."""
    n_slots = len(slot_conds)
    if n_slots > ir.MAX_GATED_ADRGS:
        return None, None, None
    n_words = max(1, (n_slots + 63) // 64)
    popcount = set_sizes(set_bits)
    ungated = np.zeros(n_words + 1, dtype=np.uint64)
    bits = np.zeros((4, n_codes + 1, n_words + 1), dtype=np.uint64)
    bits[0, :, n_words] = np.uint64(2**64 - 1) if pdx_mdc_mask is None else pdx_mdc_mask
    for slot, k in enumerate(slot_conds):
        rows = program[cond_start[k]:cond_start[k + 1]]
        gates = [(int(scope), int(s)) for scope, s in rows[rows[:, 0] == ir.OP_GATE, 1:3]]
        if not gates:
            ungated[slot >> 6] |= np.uint64(1) << np.uint64(slot & 63)
            continue
        principal = [g for g in gates if g[0] in (ir.PDX, ir.PPROC)]
        scope, s = min(principal or gates, key=lambda g: popcount[g[1]])
        ids = set_codes(set_bits, s, n_codes)
        for role in GATE_ROLES[scope]:
            bits[role, ids, slot >> 6] |= np.uint64(1) << np.uint64(slot & 63)
    def distinct(roles):
        flat = np.ascontiguousarray(bits[list(roles)].reshape(-1, n_words + 1))
        rows, inverse = np.unique(flat.view(np.dtype((np.void, 8 * (n_words + 1)))).ravel(), return_inverse=True)
        return np.frombuffer(rows.tobytes(), dtype=np.uint64).reshape(-1, n_words + 1), inverse.reshape(2, n_codes + 1).T

    # The other items' rows first, few (uint8 classes: a small table, read for most items of a case),
    # then the principal items' (uint16).
    other_rows, other = distinct((1, 3))
    principal_rows, principal = distinct((0, 2))
    if len(other_rows) >= 2**8 or 1 + len(other_rows) + len(principal_rows) >= 2**16:
        return None, None, None
    table = np.concatenate([ungated[None, :], other_rows, principal_rows])
    return (np.ascontiguousarray(principal + 1 + len(other_rows), dtype=np.uint16),
            np.ascontiguousarray(other + 1, dtype=np.uint8), np.ascontiguousarray(table))


# ---- DRG decisions: an ADRG's DRG list as one decision tree over its conditions' tests -------------

# Instructions a decision's condition may contain: tests that push a value (its atoms; a GATE / GATE_FIELD is
# the same test as IN / FIELD_CMP, ending the condition when false), constants and the logic joining them.
_ATOM_OF = {ir.OP_IN: ir.OP_IN, ir.OP_GATE: ir.OP_IN, ir.OP_IN_UNLESS: ir.OP_IN_UNLESS,
            ir.OP_FIELD_CMP: ir.OP_FIELD_CMP, ir.OP_GATE_FIELD: ir.OP_FIELD_CMP,
            ir.OP_FIELD_PRESENT: ir.OP_FIELD_PRESENT, ir.OP_COUNT_ITEMS: ir.OP_COUNT_ITEMS}
_ATOM_OPERANDS = {ir.OP_IN: 2, ir.OP_IN_UNLESS: 4, ir.OP_FIELD_CMP: 3, ir.OP_FIELD_PRESENT: 1, ir.OP_COUNT_ITEMS: 3}
_LOGIC = {ir.OP_CONST, ir.OP_AND, ir.OP_OR, ir.OP_NOT, ir.OP_JUMP_IF_FALSE, ir.OP_JUMP_IF_TRUE}
MAX_DECISION_ATOMS = 8


def _atom(row) -> tuple[int, ...] | None:
    """The test an instruction makes, as a push instruction (opcode, a, b, c, d), or None for logic."""
    op = int(row[0])
    if op not in _ATOM_OF:
        return None
    kind = _ATOM_OF[op]
    operands = [int(x) for x in row[1:1 + _ATOM_OPERANDS[kind]]]
    return (kind, *operands, *[0] * (4 - len(operands)))


def _holds(rows: list, atoms: dict, values: tuple) -> bool:
    """A condition's value when each of its tests has the value values[atoms[test]]: the kernels'
    stack machine (eval_condition) with every test replaced by that value."""
    stack, skip = [], 0
    for row in rows:
        op = int(row[0])
        if skip:
            skip -= 1
        elif op in (ir.OP_JUMP_IF_FALSE, ir.OP_JUMP_IF_TRUE):
            if stack[-1] == (op == ir.OP_JUMP_IF_TRUE):
                skip = int(row[1])
            else:
                stack.pop()
        elif op == ir.OP_CONST:
            stack.append(bool(row[1]))
        elif op in (ir.OP_GATE, ir.OP_GATE_FIELD):
            if not values[atoms[_atom(row)]]:
                return False
        elif op in _ATOM_OF:
            stack.append(values[atoms[_atom(row)]])
        elif op == ir.OP_NOT:
            stack.append(not stack.pop())
        else:   # AND / OR
            right, left = stack.pop(), stack.pop()
            stack.append((left and right) if op == ir.OP_AND else (left or right))
    return stack[-1]


def drg_decisions(program: np.ndarray, cond_start, adrg_drg_start, drg_cond, set_bits: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[None, None, None]:
    """The DRG decisions (see ir.Plan.adrg_decision). An ADRG whose DRG conditions are made of at most
    MAX_DECISION_ATOMS distinct tests (set membership, with or without `unless`, field comparisons,
    item counts) joined by `and` / `or` / `not` gets a decision tree: each node makes one of them and
    a leaf is the DRG the list gives for the tests' values (its first DRG whose condition holds, or
    none). A test no outcome depends on is not made; of the others, the tree tests first those that
    make the expected number of tests smallest (`_tree`). Returns (adrg_decision, decision_nodes,
    decision_atoms), or Nones when no ADRG has one."""
    sizes = set_sizes(set_bits) / max(1, 64 * set_bits.shape[1])
    atom_rows: dict[tuple, int] = {}
    nodes: dict[tuple[int, int, int], int] = {}
    shapes: dict[tuple, object] = {}    # the lists' trees by their conditions (most ADRGs share a few)
    roots = []
    for a in range(len(adrg_drg_start) - 1):
        first = int(adrg_drg_start[a])
        conds = [None if k == ir.NO_CONDITION else program[cond_start[k]:cond_start[k + 1]]
                 for k in drg_cond[first:adrg_drg_start[a + 1]]]
        key = tuple(None if rows is None else rows.tobytes() for rows in conds)
        if key not in shapes:
            shapes[key] = _tree(conds, sizes)
        tree = shapes[key]

        def place(tree) -> int:
            """Target of a local tree: a node, -1 (no DRG holds) or -2 - g."""
            if not isinstance(tree, tuple):
                return -1 if tree < 0 else -2 - (first + tree)
            test, if_false, if_true = tree
            targets = place(if_false), place(if_true)   # children first: a node's targets are below it
            return nodes.setdefault((atom_rows.setdefault(test, len(atom_rows)), *targets), len(nodes))

        root = -1 if tree is None else place(tree)
        roots.append(root if root >= 0 else -1)    # a list decided by no test keeps the general path
    if all(r < 0 for r in roots):
        return None, None, None
    return (np.asarray(roots, dtype=np.int32),
            np.asarray(list(nodes), dtype=np.int32).reshape(-1, 3),
            np.asarray(list(atom_rows), dtype=np.int32).reshape(-1, 5))


# A test's cost in a decision tree, and the chance it holds: a rough guess from its set's share of the
# code ids and the items it looks at (orders the tests; the tree's result does not depend on it).
_SCOPE_ITEMS = {ir.PDX: 1, ir.PPROC: 1, ir.DX: 4, ir.SDX: 3, ir.PROC: 2, ir.SPROC: 1}


def _test_guess(test: tuple, sizes: np.ndarray) -> tuple[float, float]:
    """(cost, chance it holds) of a decision test."""
    kind, a, b = test[:3]
    if kind in (ir.OP_IN, ir.OP_IN_UNLESS):
        items = _SCOPE_ITEMS[a]
        return 1.0 + (items > 1), 1 - (1 - float(sizes[b])) ** items
    return 1.0, 0.5


def _tree(conds: list, sizes: np.ndarray):
    """The decision tree of a DRG list (conditions as program rows, None: unconditional), as nested
    (test, if_false, if_true) tuples with leaves the list position of the DRG (-1: none); None when
    the list has no usable condition. Of the trees giving the list's outcome, the one with the
    smallest expected cost (each test's cost and chance from _test_guess) is built."""
    atoms: dict[tuple, int] = {}
    usable = any(rows is not None for rows in conds)
    for rows in conds:
        for row in rows if rows is not None else ():
            test = _atom(row)
            if test is None and int(row[0]) not in _LOGIC:
                usable = False
            elif test is not None:
                atoms.setdefault(test, len(atoms))
    if not usable or len(atoms) > MAX_DECISION_ATOMS:
        return None
    tests = list(atoms)
    guesses = [_test_guess(t, sizes) for t in tests]

    def outcome(values: tuple) -> int:
        for position, rows in enumerate(conds):
            if rows is None or _holds(rows, atoms, values):
                return position
        return -1

    outcomes = {values: outcome(values) for values in _assignments(len(tests))}
    best: dict[tuple, tuple[float, object]] = {}

    def solve(fixed: tuple) -> tuple[float, object]:
        """(expected cost, tree) once the tests with a value in fixed (None: not made yet) have it."""
        if fixed in best:
            return best[fixed]
        below = {v for values, v in outcomes.items()
                 if all(f is None or f == x for f, x in zip(fixed, values))}
        if len(below) == 1:
            best[fixed] = (0.0, below.pop())
            return best[fixed]
        choice = None
        for i, f in enumerate(fixed):
            if f is not None:
                continue
            (cost_f, tree_f), (cost_t, tree_t) = (solve(fixed[:i] + (v,) + fixed[i + 1:]) for v in (False, True))
            if tree_f == tree_t:            # the outcome does not depend on test i here
                cost = cost_f
                tree = tree_f
            else:
                cost, chance = guesses[i]
                cost += chance * cost_t + (1 - chance) * cost_f
                tree = (tests[i], tree_f, tree_t)
            if choice is None or cost < choice[0] - 1e-12:
                choice = (cost, tree)
        best[fixed] = choice
        return choice

    return solve((None,) * len(tests))[1]


def _assignments(n: int):
    """Every tuple of n booleans."""
    return [tuple(bool(i >> j & 1) for j in range(n)) for i in range(2 ** n)]
