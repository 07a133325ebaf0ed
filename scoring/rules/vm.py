"""The Numba kernel that runs every compiled rule on every transaction of a batch, in one call.

A rule set compiles to one small stack program (``scoring.rules.compiler``): ``code`` is int64
``[m, 3]`` (opcode, a, b), rule ``r`` spans ``code[starts[r]:starts[r + 1]]`` and leaves 1.0 (hit) or
0.0 on the stack. Values are float64 (true/false as 1.0/0.0); int64 columns (ids, countries,
channels) are only compared against int64 codes, never through float64. ``and``/``or`` short-circuit.
Sets are sorted, concatenated segments searched by bisection (O(log m) per transaction; ~20 steps
for a million-entry list).

One generic kernel instead of code generated per rule set: a new rule set costs no JIT compile
(hot reload stays in milliseconds), and for one transaction a single call replaces the hundreds of
NumPy calls a per-rule NumPy design needs (measured in ``benchmarks/test_bench_rules.py``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

CONST, REAL, INT_AS_REAL, FEATURE, SCORE = 0, 1, 2, 3, 4
ADD, SUB, MUL, DIV, NEG = 5, 6, 7, 8, 9
LT, LE, GT, GE, EQ, NE = 10, 11, 12, 13, 14, 15
INT_EQ_CODE, INT_EQ_INT, INT_IN_SET, REAL_IN_SET = 16, 17, 18, 19
NOT, JUMP_IF_FALSE, JUMP_IF_TRUE = 20, 21, 22
N_OPS = 23

ALLOW, BLOCK = 1, 4

@njit(cache=True, nogil=True, error_model="numpy")
def run_rules(  # pragma: no cover - jitted
    code: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    rule_actions: npt.NDArray[np.int64],
    consts: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int64],
    int_sets: npt.NDArray[np.int64],
    int_offsets: npt.NDArray[np.int64],
    real_sets: npt.NDArray[np.float64],
    real_offsets: npt.NDArray[np.int64],
    stack_size: int,
    reals: npt.NDArray[np.float64],
    ints: npt.NDArray[np.int64],
    features: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float64],
    model_actions: npt.NDArray[np.int64],
    hits: npt.NDArray[np.bool_],
    rule_action: npt.NDArray[np.int64],
    final_action: npt.NDArray[np.int64],
) -> None:
    """Fill ``hits[i, r]``, ``rule_action[i]`` (0: no rule hit; ALLOW when an allow rule hit, else the most
    severe hit) and ``final_action[i]`` (ALLOW on an allow hit, else max(model_actions[i], rule_action[i]))."""
    n_rules = starts.shape[0] - 1
    stack = np.empty(max(stack_size, 1), np.float64)
    for i in range(hits.shape[0]):
        allowed = False
        worst = 0
        for r in range(n_rules):
            pc = starts[r]
            stop = starts[r + 1]
            sp = -1
            while pc < stop:
                op = code[pc, 0]
                a = code[pc, 1]
                pc += 1
                if op == CONST:
                    sp += 1
                    stack[sp] = consts[a]
                elif op == REAL:
                    sp += 1
                    stack[sp] = reals[a, i]
                elif op == INT_AS_REAL:
                    sp += 1
                    stack[sp] = float(ints[a, i])
                elif op == FEATURE:
                    sp += 1
                    stack[sp] = float(features[i, a])
                elif op == SCORE:
                    sp += 1
                    stack[sp] = scores[i]
                elif op == INT_EQ_CODE:
                    sp += 1
                    stack[sp] = 1.0 if ints[a, i] == codes[code[pc - 1, 2]] else 0.0
                elif op == INT_EQ_INT:
                    sp += 1
                    stack[sp] = 1.0 if ints[a, i] == ints[code[pc - 1, 2], i] else 0.0
                elif op == INT_IN_SET:
                    s = code[pc - 1, 2]
                    sp += 1
                    key = ints[a, i]
                    lo, hi = int_offsets[s], int_offsets[s + 1]
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if int_sets[mid] < key:
                            lo = mid + 1
                        else:
                            hi = mid
                    stack[sp] = 1.0 if lo < int_offsets[s + 1] and int_sets[lo] == key else 0.0
                elif op == REAL_IN_SET:
                    x = stack[sp]
                    lo, hi = real_offsets[a], real_offsets[a + 1]
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if real_sets[mid] < x:
                            lo = mid + 1
                        else:
                            hi = mid
                    stack[sp] = 1.0 if lo < real_offsets[a + 1] and real_sets[lo] == x else 0.0
                elif op == NOT:
                    stack[sp] = 1.0 if stack[sp] == 0.0 else 0.0
                elif op == JUMP_IF_FALSE:
                    if stack[sp] == 0.0:
                        pc = a
                    else:
                        sp -= 1
                elif op == JUMP_IF_TRUE:
                    if stack[sp] != 0.0:
                        pc = a
                    else:
                        sp -= 1
                elif op == NEG:
                    stack[sp] = -stack[sp]
                else:
                    y = stack[sp]
                    sp -= 1
                    x = stack[sp]
                    if op == ADD:
                        v = x + y
                    elif op == SUB:
                        v = x - y
                    elif op == MUL:
                        v = x * y
                    elif op == DIV:
                        v = x / y
                    elif op == LT:
                        v = 1.0 if x < y else 0.0
                    elif op == LE:
                        v = 1.0 if x <= y else 0.0
                    elif op == GT:
                        v = 1.0 if x > y else 0.0
                    elif op == GE:
                        v = 1.0 if x >= y else 0.0
                    elif op == EQ:
                        v = 1.0 if x == y else 0.0
                    else:  # NE
                        v = 1.0 if x != y else 0.0
                    stack[sp] = v
            hit = stack[0] != 0.0
            hits[i, r] = hit
            if hit:
                act = rule_actions[r]
                if act == ALLOW:
                    allowed = True
                elif act > worst:
                    worst = act
        if allowed:
            rule_action[i] = ALLOW
            final_action[i] = ALLOW
        else:
            rule_action[i] = worst
            final_action[i] = max(worst, model_actions[i])
