"""The execution plan: everything the kernel needs, as flat integer arrays.

Codes are interned once per plan: `codes[i]` has id i+1; id 0 means "not a code of this scheme"
(unknown codes can match nothing, so they all share id 0). Code sets are bitmaps over ids.
Label maps give each code id a label id (0 = no label), e.g. the body site of a trauma code or
the exclusion table of a CC code; label ids are global to the plan so two maps can be compared.

A condition is a postfix program over a small boolean stack. Each instruction is a row of
`program` (int32[n, 5]: opcode, a, b, c, d); condition k is rows cond_start[k]:cond_start[k+1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Scopes (operand a of IN / IN_UNLESS / COUNT / TAGSET)
PDX, PPROC, DX, PROC, SDX, SPROC = range(6)
SCOPE_IDS = {"pdx": PDX, "pproc": PPROC, "dx": DX, "proc": PROC, "secondary dx": SDX, "secondary proc": SPROC}

# Case fields: rows of the int32 field matrix; MISSING marks an absent value.
FIELDS = ("sex", "age", "age_days", "weight", "los", "discharge", "dept")
FIELD_IDS = {name: i for i, name in enumerate(FIELDS)}
MISSING = np.iinfo(np.int32).min
SEX_VALUES = {"male": 1, "female": 2}  # `sex = male` in a scheme compares the field with 1
# `read sex ... "男" as other`: a spelling accepted as given, equal to neither male nor female (CHS-DRG
# 1.1's reference compares sex as an integer, and keeps 男/女 as text). Negative: no spelling read by
# `digits` gives it, and a scheme compares with it only when it reads a spelling so (grouper.lang.check).
SEX_OTHER = -1
SEX_NAMES = {**SEX_VALUES, "other": SEX_OTHER}  # the sex words of a scheme's conditions and `read sex`

# How a field's text was read (encode → the kernel's validation pass): absent (null or blank), a
# usable number, or text that is none (malformed_<field>). FIELD_SLOW: the compiled parser's "not a
# plain integer, apply the full reading rules" (grouper.engine.encode); never left in a Batch.
FIELD_ABSENT, FIELD_OK, FIELD_BAD, FIELD_SLOW = range(4)

# The built-in checks of the validation pass (kernel `check_cases`), in the order they are reported
# for a case: the catalogue order of grouper.reasons (the code-map checks unmapped_* run before
# encoding, in grouper.validate). The scheme's warn rule w is check len(CHECKS) + w.
CHECKS = ("malformed_line", "malformed_sex", "malformed_age", "malformed_age_days", "malformed_weight",
          "malformed_los", "malformed_discharge", "missing_dx", "implausible_age", "implausible_age_days",
          "implausible_weight", "implausible_los", "unknown_discharge", "bad_dx_format", "bad_proc_format",
          "unknown_dx", "unknown_proc", "not_principal_dx", "duplicate_dx", "duplicate_proc")
MAX_AGE = 150
WEIGHT_RANGE = (100, 10_000)
DISCHARGE_MODES = (1, 2, 3, 4, 5, 9)

# Code formats. ICD-10 医保版 2.0 diagnosis codes: A00.000, A00.000x001, A33.x00, A33.x00x001, with an
# optional asterisk code after a dagger code: A01.001+K77.0*, A17.000+G01*. Every code of the CHS-DRG
# 1.1 dictionary matches.
DX_FORMAT = r"^[A-Z][0-9]{2}\.(?:[0-9]{3}|x[0-9]{2})(?:x[0-9]{3})?(?:\+[A-Z][0-9]{2}(?:\.[0-9])?\*)?$"
# ICD-9-CM-3 医保版 2.0 procedure codes: 51.2300, 00.0200x001, 01.6x00, 01.6x00x001, 17.91100,
# 17.912A0, and two dictionary codes of the form 86.700x0013. Every code of the dictionary matches.
PROC_FORMAT = (r"^[0-9]{2}\.(?:[0-9]{4}(?:x[0-9]{3})?|[0-9]x[0-9]{2}(?:x[0-9]{3})?|[0-9]{5}|[0-9]{3}[A-Z][0-9]"
               r"|[0-9]{3}x[0-9]{4})$")
# May not be the principal diagnosis: an asterisk (manifestation) code on its own — ending in `*`
# without the `+` of a dagger/asterisk pair — or an external cause of injury V01-Y98.
ASTERISK_ONLY = r"^[^+]*\*$"
EXTERNAL_CAUSE = r"^(?:V(?:0[1-9]|[1-9][0-9])|[WX][0-9]{2}|Y(?:[0-8][0-9]|9[0-8]))"
NOT_PRINCIPAL = f"(?:{ASTERISK_ONLY})|(?:{EXTERNAL_CAUSE})"
# Per-code flags of the validation pass (bits of `code_flags[id]`)
CODE_DX_FORMAT, CODE_PROC_FORMAT, CODE_NOT_PRINCIPAL, CODE_DX_DICT, CODE_PROC_DICT = 1, 2, 4, 8, 16

# Comparisons (FIELD_CMP b, COUNT c). A comparison with a missing value is false.
EQ, NE, LT, LE, GT, GE = range(6)
CMP_IDS = {"=": EQ, "!=": NE, "<": LT, "<=": LE, ">": GT, ">=": GE}

# Opcodes
OP_CONST = 0        # push a (0/1)
OP_IN = 1           # push: some item of scope a is in set b
OP_IN_UNLESS = 2    # push: some item of scope a is in set b and not (map c[item] != 0 and map c[item] == map d[pdx])
OP_COUNT = 3        # push: (number of distinct nonzero labels map b[item] over scope a) cmp c value d
OP_TAGSET = 4       # load the distinct nonzero labels map b[item] over scope a into the tag register (pushes nothing)
OP_HAS_TAG = 5      # push: label a is in the tag register
OP_FIELD_CMP = 6    # push: field a cmp b value c
OP_FIELD_PRESENT = 7  # push: field a is not missing
OP_AND = 8
OP_OR = 9
OP_NOT = 10
OP_GATE = 11        # if no item of scope a is in set b, the whole condition is false: stop now (pushes nothing)
OP_COUNT_ITEMS = 12  # push: (number of items of scope a, any code) cmp b value c
OP_GATE_FIELD = 13  # unless field a is present and field a cmp b value c, the whole condition is false: stop now
# Short-circuit `and` / `or` (the compiler emits `A and B` as A, JUMP_IF_FALSE len(B), B): when the value on
# top of the stack decides the result, skip the next a instructions and leave it there; else pop it.
OP_JUMP_IF_FALSE = 14
OP_JUMP_IF_TRUE = 15
OPCODE_NAMES = ("CONST", "IN", "IN_UNLESS", "COUNT", "TAGSET", "HAS_TAG", "FIELD_CMP", "FIELD_PRESENT", "AND", "OR",
                "NOT", "GATE", "COUNT_ITEMS", "GATE_FIELD", "JUMP_IF_FALSE", "JUMP_IF_TRUE")

MAX_STACK = 64
MAX_TAGS = 64  # distinct labels held by the tag register
MAX_GATED_ADRGS = 1024  # the ADRG-level gate (Plan.adrg_gate_class) holds a bitmap of this many ADRGs + qy rules

# Result status codes (kernel output) and their names (result frame values)
GROUPED, NO_ADRG, UNGROUPABLE, INVALID, NO_DRG, QY = range(6)
STATUS_NAMES = ("grouped", "no_adrg", "ungroupable", "invalid", "no_drg", "qy")
NO_CONDITION = -1  # drg_cond entry of an unconditional DRG
NOT_QY = -1        # adrg_qy entry of a real ADRG

# Behaviour flags (the kernel's `behaviour` argument), from the scheme's settings (lang/settings.py)
NO_DRG_STATUS = 1   # setting adrg_without_drg = no_drg: an ADRG none of whose DRGs holds ends grouping with
                    # status no_drg (without it the ADRG counts as not matched: the next ADRG is tried)
SECOND_ATTEMPT = 2  # setting second_attempt = later_procedures: regroup an ungrouped case with each later
                    # procedure in turn as the principal one (moved to the front, the others in order)
ATTEMPT_ALONE = 4   # with SECOND_ATTEMPT, setting second_attempt = later_procedure_alone: the retry's procedure
                    # list is that later procedure alone (the others are gone)
LAST_ENTERED = 8    # setting ungrouped_mdc = last_entered: a case no attempt groups (no_adrg/ungroupable) is
                    # no_adrg with the last MDC entered over all attempts (ungroupable when none entered one)


@dataclass
class Plan:
    name: str
    version: str
    codes: list[str]
    depts: list[str]
    labels: list[str]
    set_bits: np.ndarray        # uint64[n_sets, n_words]
    label_maps: np.ndarray      # uint32[n_maps, len(codes) + 1]
    program: np.ndarray         # int32[n_instr, 5]
    cond_start: np.ndarray      # int32[n_cond + 1]
    invalid_cond: np.ndarray    # int32[n_invalid]
    mdc_cond: np.ndarray        # int32[n_mdc]
    mdc_adrg_start: np.ndarray  # int32[n_mdc + 1]  ADRGs of MDC m: mdc_adrg_start[m]:mdc_adrg_start[m+1]
    adrg_cond: np.ndarray       # int32[n_adrg]
    adrg_drg_start: np.ndarray  # int32[n_adrg + 1]
    drg_cond: np.ndarray        # int32[n_drg], NO_CONDITION when unconditional
    invalid_names: list[str]
    invalid_messages: list[str]
    mdc_codes: list[str]
    mdc_names: list[str]
    adrg_codes: list[str]
    adrg_names: list[str]
    drg_codes: list[str]
    drg_names: list[str]
    # Where each condition / set / label map came from, for explain and error messages.
    cond_sources: list[str] = field(default_factory=list)
    set_sources: list[str] = field(default_factory=list)
    map_sources: list[str] = field(default_factory=list)
    # Lookups for explain and validation (not used by the kernel).
    set_index: dict[str, int] = field(default_factory=dict)        # set text (printer form) → set
    map_index: dict[tuple, int] = field(default_factory=dict)      # (table, filters, column) → label map
    warn_cond: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    warn_names: list[str] = field(default_factory=list)
    warn_messages: list[str] = field(default_factory=list)
    validation: dict[str, str] = field(default_factory=dict)       # built-in reason → error/warning/off
    code_maps: dict[str, dict[str, str]] = field(default_factory=dict)  # "dx"/"proc" → {from: to}
    dictionary_sets: dict[str, int] = field(default_factory=dict)  # "dx"/"proc" → set of dictionary codes
    code_names: dict[str, str] = field(default_factory=dict)       # code → name, from the dictionaries
    drg_weights: list[float | None] = field(default_factory=list)  # relative weight per DRG, if declared
    # Per code id, bit m set unless MDC m's entry requires `pdx in S` with the code outside S: the
    # kernel skips MDCs whose entry cannot hold for the case's principal diagnosis (None: > 64 MDCs).
    pdx_mdc_mask: np.ndarray | None = None
    # Per code id, bit m set when the code is in the GATE set chosen for some ADRG (or qy rule) of MDC m;
    # bit m of adrg_gate_free set when some ADRG of MDC m has no GATE. A case none of whose codes
    # (dx or proc) has bit m, with the bit clear in adrg_gate_free, matches no ADRG of MDC m: the kernel
    # enters the MDC (so no_adrg results are unchanged) without testing its ADRGs. (None: > 64 MDCs.)
    adrg_gate_mask: np.ndarray | None = None
    adrg_gate_free: int = 0
    # Bit m set when MDC m's entry is exactly `pdx in S` and pdx_mdc_mask's bit m says, for every code
    # id, whether it is in S (or the entry is `true` and the bit is set for every code id): for a case
    # with a principal diagnosis the compiled kernel takes that bit as the entry's value without
    # evaluating it (the result is the same).
    mdc_entry_exact: int = 0
    # The ADRG-level gate. Slot t is ADRG t (t < n_adrg), then top-level qy rule q (t = n_adrg + q),
    # then the entry of MDC m (t = n_adrg + len(top-level qy rules) + m); each slot's condition has
    # one GATE chosen (a principal-item one if any, the fewest codes) or none. Row r of adrg_gate_rows
    # (uint64 words, bit t per slot) is a set of slots: row adrg_gate_class[x, 0] holds those whose GATE
    # code id x passes as the principal diagnosis, adrg_gate_class[x, 1] as the principal procedure,
    # adrg_gate_other[x, 0] as another diagnosis, adrg_gate_other[x, 1] as another procedure (few
    # distinct rows: a small uint8 table, read for most items); row 0 the slots without a GATE. The
    # compiled kernel ORs row 0 and the rows of the case's items and tests only those slots (the others'
    # GATE would fail): the result is the same. A row's last word is, in a principal diagnosis's row,
    # the code's pdx_mdc_mask (all ones without one): the kernel reads the pdx's data once.
    # (None: more than MAX_GATED_ADRGS slots, 255 rows for other items or 65,535 rows.)
    adrg_gate_class: np.ndarray | None = None    # uint16[n_ids, 2]
    adrg_gate_other: np.ndarray | None = None    # uint8[n_ids, 2]
    adrg_gate_rows: np.ndarray | None = None     # uint64[n_rows, ceil(n_slots / 64) + 1]
    # DRG decisions. adrg_decision[a] >= 0: ADRG a's DRG list as a decision tree, rooted at that row of
    # decision_nodes; -1: its DRG conditions are evaluated in turn. Node row (atom, if_false, if_true)
    # tests decision_atoms[atom], a push instruction of a DRG condition (IN, IN_UNLESS, FIELD_CMP,
    # FIELD_PRESENT or COUNT_ITEMS, operands as in program), and goes on to the target its value
    # names: a node (always a lower row), -1 (no DRG of the list holds) or -2 - g (DRG g). The tree
    # gives the DRG the list gives (its first DRG whose condition holds), each test made at most once
    # (the conditions stay in drg_cond for explain). None: no ADRG has one.
    adrg_decision: np.ndarray | None = None    # int32[n_adrg]
    decision_nodes: np.ndarray | None = None   # int32[n_nodes, 3]
    decision_atoms: np.ndarray | None = None   # int32[n_atoms, 5]
    # Ambiguous groups (qy rules). Rule q holds on condition qy_cond[q] and gives status QY with MDC
    # qy_mdc[q] (-1: none) and drg_codes[qy_drg[q]] (QY codes follow the DRGs in drg_codes). Top-level
    # rules come first: those tried before MDC m are mdc_qy_start[m]:mdc_qy_start[m+1] (the last
    # range, m = n_mdc, after every MDC). A rule inside an MDC sits among its ADRGs as a
    # pseudo-ADRG a with adrg_qy[a] = q (NOT_QY for a real ADRG), adrg_cond[a] = qy_cond[q] and no DRGs.
    mdc_qy_start: np.ndarray | None = None  # int32[n_mdc + 2]
    qy_cond: np.ndarray | None = None       # int32[n_qy]
    qy_mdc: np.ndarray | None = None        # int32[n_qy]
    qy_drg: np.ndarray | None = None        # int32[n_qy]
    adrg_qy: np.ndarray | None = None       # int32[n_adrg]
    qy_codes: list[str] = field(default_factory=list)  # qy code of each rule (explain)
    # How input values are read (`read` statements; see docs/scheme-language.md).
    sex_spellings: dict[str, int] | None = None   # text → 1/2/SEX_OTHER; None: digits and the usual words
    sex_digits: bool = False                       # `read sex digits, ...`: digits 0-9 read as their number too
    empty_numbers: dict[str, int] = field(default_factory=dict)  # field → value of an empty field
    empty_lists: tuple[str, ...] = ()             # "dx"/"proc": an empty field is no item (else [""])
    # `prefix` sets: an unknown code starting with prefixes[k] gets code id len(codes) + 1 + k (the
    # longest matching prefix), so prefix sets match codes the scheme never lists.
    prefixes: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)        # every setting's value (defaults included)
    behaviour: int = 0                                             # NO_DRG_STATUS | SECOND_ATTEMPT | ... flags

    def code_enum(self):
        """The Polars Enum over the plan's codes (built once: it is costly for ~50,000 codes)."""
        enum = self.__dict__.get("_code_enum")
        if enum is None:
            import polars as pl

            enum = self.__dict__["_code_enum"] = pl.Enum(self.codes)
        return enum

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_code_enum", "_code_tables")}

    @property
    def n_codes(self) -> int:
        return len(self.codes)

    @property
    def n_ids(self) -> int:
        """Code ids in use: 0 (unknown), the codes, one per prefix."""
        return len(self.codes) + 1 + len(self.prefixes)

    def condition(self, k: int) -> np.ndarray:
        return self.program[self.cond_start[k]:self.cond_start[k + 1]]

    def kernel_args(self) -> tuple:
        """The plan arrays in the order every kernel's `group_cases` takes them."""
        return (self.set_bits, self.label_maps, self.program, self.cond_start, self.invalid_cond,
                self.mdc_cond, self.mdc_adrg_start, self.adrg_cond, self.adrg_drg_start, self.drg_cond)

    def decision_args(self) -> dict:
        """The DRG decisions, as the keyword arguments every kernel's `group_cases` takes (none: no decisions)."""
        if self.adrg_decision is None:
            return {}
        return {"adrg_decision": self.adrg_decision, "decision_nodes": self.decision_nodes,
                "decision_atoms": self.decision_atoms}

    def qy_args(self) -> dict:
        """The qy arrays, as the keyword arguments every kernel's `group_cases` takes (none: no qy rules)."""
        if self.qy_cond is None or not len(self.qy_cond):
            return {}
        return {"mdc_qy_start": self.mdc_qy_start, "qy_cond": self.qy_cond, "qy_mdc": self.qy_mdc,
                "qy_drg": self.qy_drg, "adrg_qy": self.adrg_qy}
