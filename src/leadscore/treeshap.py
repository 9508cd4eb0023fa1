"""Exact path-dependent TreeSHAP for LightGBM boosters, compiled with numba.

Per-lead explanations are the path-dependent ("tree_path_dependent") SHAP values of the raw margin,
the same numbers as ``booster.predict(X, pred_contrib=True)``, computed much faster:

    from leadscore.treeshap import FastTreeExplainer, contributions

    explainer = FastTreeExplainer(booster)        # precompute once per model
    phi = explainer.contributions(X)              # (n_rows, n_features + 1); last column = bias
    phi = contributions(booster, X)               # same, explainer cached per booster object
    phi = contributions(booster, X, engine="lightgbm")   # LightGBM's own pred_contrib, for comparison

Algorithm (Fast TreeSHAP v2 style, Yang 2021)
----------------------------------------------
For a leaf with value ``v`` whose root path splits on the ``d`` distinct features ``D`` (repeated
features merged as in the reference algorithm: zero fraction ``z_j`` = product of the cover ratios of
all splits on ``j`` along the path, one fraction ``o_j`` = 1 if the row takes every split on ``j`` the
way the path does), the leaf's share of the SHAP value of feature ``i`` is

    v * (o_i - z_i) * sum_{S subset of D-{i}} w(|S|, d) * prod_{j in S} o_j * prod_{j in D-{i}-S} z_j,
    w(k, d) = k! (d-1-k)! / d!.

Because ``o_j`` is 0 or 1 the row only enters through the set ``P = {j : o_j = 1}``. With
``Z = prod_{j not in P} z_j`` and ``A(Q) = sum_{S subset of Q} w(|S|, d) prod_{j in Q-S} z_j``:

    i not in P:  -v * Z * A(P)            (the same for every such i)
    i in P:       v * Z * (1 - z_i) * A(P - {i})

``A`` depends only on the tree, so it is tabulated once per leaf for all ``2**d`` subsets; a row then
costs O(d) per leaf (instead of O(d**2) for the classic algorithm that LightGBM uses). Leaves whose
path has more than ``max_table_depth`` distinct features (or that do not fit the ``max_table_bytes``
budget) are not tabulated: for them ``A(P)`` and every ``A(P - {i})`` are computed per row in
O(|P| * d) with a prefix polynomial / weighted-suffix recurrence that only adds and multiplies
non-negative numbers (no polynomial division), so both paths are exact to rounding.

Rows are processed in blocks (parallel across blocks with ``numba.prange``); inside a block the loop
runs tree by tree so that a tree's nodes and tables stay in cache while every row of the block uses it.

Decision rules reproduce LightGBM's ``Tree::Decision`` on the values LightGBM itself would see:
|x| <= 1e-35 is read as 0; numerical ``x <= threshold`` goes left; NaN is read as 0 unless the node's
missing type is NaN; missing (NaN for type NaN, zero for type Zero) goes to ``default_left``;
categorical: NaN, values <= -1 and values >= 2**31 go right, otherwise ``int(x)`` in the node's
category set goes left. Pandas input is converted as LightGBM's own pandas conversion does it (category
codes from ``booster.pandas_categorical``, unseen/missing categories -> NaN); numpy input that is not
float32/float64 is cast to float32 first, as LightGBM does.

The explainer also predicts: :meth:`FastTreeExplainer.predict_raw` walks the same node arrays and adds
the leaf values tree by tree in LightGBM's order (``GBDT::PredictRaw``), so it returns the same bits as
``booster.predict(X, raw_score=True)``. An explainer holds only numpy arrays: pickled with a model it
loads without importing LightGBM (about a second of a fresh process's start), and its SHAP tables are
rebuilt on load rather than stored.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

import numba
import numpy as np
import pandas as pd
from numba import njit, prange

if TYPE_CHECKING:  # LightGBM is not imported to score with a pickled explainer
    import lightgbm as lgb

__all__ = ["FastTreeExplainer", "contributions"]


from leadscore.numba_cache import CACHE_DIR  # noqa: E402,F401  (set before the kernels below compile)

_KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float literal widened to double)
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_MASK_BITS = 62  # slots >= this are never tabulated; their leaves use the per-row path walk


# ----------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------
@njit(inline="always")
def _categorical_left(x, cat_bits, cat_off, cat_len):
    """LightGBM CategoricalDecision: NaN, x <= -1 and x >= 2**31 go right; int(x) in the set goes left."""
    if np.isnan(x) or x <= -1.0 or x >= 2147483648.0:
        return 0
    iv = np.int64(x)  # truncation, like static_cast<int>
    word = iv >> 5
    if word >= cat_len:
        return 0
    return np.int64((cat_bits[cat_off + word] >> np.uint32(iv & 31)) & np.uint32(1))


@njit(parallel=True, cache=True)
def _shap_kernel(X, out, block_rows,
                 t_node_off, t_nint, t_leaf_off, t_nleaf, t_out_off,
                 n_feat, n_thr, n_kind, n_nanl, n_zerol, n_cat_off, n_cat_len, n_lpos, n_rpos, n_bit,
                 cat_bits,
                 l_value, l_d, l_soff, l_toff, l_poff, l_plen,
                 s_feat, s_z, s_omz, p_node, p_dir, p_slot,
                 table, W, max_int, max_leaf, max_d):
    """Rows in blocks (parallel); per block, tree by tree, every loop over the block's rows is branch-free
    so that LLVM can vectorise it. Writes every column of out except the bias (added by the caller)."""
    n, n_features = X.shape
    n_cols = out.shape[1]
    n_trees = t_node_off.shape[0]
    n_blocks = (n + block_rows - 1) // block_rows
    for b in prange(n_blocks):
        r0 = b * block_rows
        B = min(n, r0 + block_rows) - r0
        XT = np.empty((n_features, B))
        for i in range(B):
            for f in range(n_features):
                XT[f, i] = X[r0 + i, f]
        OT = np.zeros((n_cols, B))
        M = np.empty((max_int + max_leaf, B), np.int64)  # one-fraction bit masks: internal nodes, then leaves
        GL = np.empty((max_int, B), np.int64)  # 1 if the row goes left at the node
        P = np.empty(B, np.int64)
        Zb = np.empty(B)
        base = np.empty(B)
        neg = np.empty(B)
        o = np.empty(max_d + 1, np.int64)
        elems = np.empty(max_d + 1, np.int64)
        H = np.zeros((max_d + 2, max_d + 2))
        pre = np.zeros(max_d + 2)
        for t in range(n_trees):
            no = t_node_off[t]
            ni = t_nint[t]
            lo = t_leaf_off[t]
            nl = t_nleaf[t]
            co = t_out_off[t]
            # 1) decisions at every internal node (preorder: parents first) and the masks they imply
            for i in range(B):
                M[0, i] = -1
            for k in range(ni):
                g = no + k
                f = n_feat[g]
                if n_kind[g] == 0:
                    thr = n_thr[g]
                    nanl = np.int64(n_nanl[g])
                    zerol = np.int64(n_zerol[g])
                    for i in range(B):
                        x = XT[f, i]
                        left = np.int64(1) if x <= thr else np.int64(0)
                        left = zerol if (x >= -_KZERO and x <= _KZERO) else left
                        left = nanl if x != x else left
                        GL[k, i] = left
                else:
                    for i in range(B):
                        GL[k, i] = _categorical_left(XT[f, i], cat_bits, n_cat_off[g], n_cat_len[g])
                bm = n_bit[g]
                cl = n_lpos[g]
                cr = n_rpos[g]
                for i in range(B):
                    m = M[k, i]
                    left = GL[k, i]
                    M[cl, i] = m & ~(bm & (left - 1))
                    M[cr, i] = m & ~(bm & (-left))
            # 2) every leaf's share
            for j in range(nl):
                lg = lo + j
                pj = ni + j
                d = l_d[lg]
                so = l_soff[lg]
                to = l_toff[lg]
                v = l_value[lg]
                if to >= 0:  # tabulated leaf: O(d) per row
                    full = (np.int64(1) << np.int64(d)) - 1
                    for i in range(B):
                        P[i] = M[pj, i] & full
                        Zb[i] = 1.0
                    for q in range(d):
                        zq = s_z[so + q]
                        for i in range(B):
                            Zb[i] *= 1.0 if ((P[i] >> q) & 1) == 1 else zq
                    for i in range(B):
                        base[i] = v * Zb[i]
                        neg[i] = -(base[i] * table[to + P[i]])
                    for q in range(d):
                        row = co + s_feat[so + q]
                        omz = s_omz[so + q]
                        bq = np.int64(1) << np.int64(q)
                        for i in range(B):
                            pos = base[i] * omz * table[to + (P[i] ^ bq)]
                            OT[row, i] += pos if (P[i] & bq) != 0 else neg[i]
                else:  # per-row fallback: O(|P| d) per row
                    po = l_poff[lg]
                    pe = po + l_plen[lg]
                    for i in range(B):
                        for q in range(d):
                            o[q] = 1
                        for q in range(po, pe):
                            if GL[p_node[q], i] != p_dir[q]:
                                o[p_slot[q]] = 0
                        Z = 1.0
                        p = 0
                        for q in range(d):
                            if o[q] == 1:
                                elems[p] = q
                                p += 1
                            else:
                                Z *= s_z[so + q]
                        bse = v * Z
                        # H[m, a] = sum_c w(a + c, d) e_c(z of elems[m:])  (weighted suffix products)
                        for a in range(p + 1):
                            H[p, a] = W[d, a]
                        for m in range(p - 1, -1, -1):
                            zq = s_z[so + elems[m]]
                            for a in range(m + 1):
                                H[m, a] = zq * H[m + 1, a] + H[m + 1, a + 1]
                        ng = bse * H[0, 0]  # v Z A(P)
                        if p < d:
                            for q in range(d):
                                if o[q] == 0:
                                    OT[co + s_feat[so + q], i] -= ng
                        # prefix polynomial prod_{elems[:m]} (z + t); A(P - {elems[m]}) = <pre, H[m + 1]>
                        pre[0] = 1.0
                        for m in range(p):
                            acc = 0.0
                            for a in range(m + 1):
                                acc += pre[a] * H[m + 1, a]
                            q = elems[m]
                            OT[co + s_feat[so + q], i] += bse * s_omz[so + q] * acc
                            zq = s_z[so + q]
                            pre[m + 1] = pre[m]
                            for a in range(m, 0, -1):
                                pre[a] = zq * pre[a] + pre[a - 1]
                            pre[0] = zq * pre[0]
        for i in range(B):
            for c in range(n_cols):
                out[r0 + i, c] = OT[c, i]


@njit(parallel=True, cache=True)
def _build_tables(leaves, l_d, l_soff, l_toff, s_z, W, table):
    """table[toff + Q] = A(Q) = sum_{S subset of Q} w(|S|, d) prod_{j in Q - S} z_j for every Q."""
    for i in prange(leaves.shape[0]):
        lg = leaves[i]
        d = l_d[lg]
        so = l_soff[lg]
        to = l_toff[lg]
        nq = np.int64(1) << np.int64(d)
        # F[Q, s] = sum_{S subset of Q} w(|S| + s, d) prod_{Q - S} z ; F[Q, s] = z_h F[Q', s] + F[Q', s + 1]
        F = np.empty((nq, d + 2))
        pc = np.zeros(nq, np.int64)
        for s in range(d + 2):
            F[0, s] = W[d, s]
        table[to] = F[0, 0]
        h = 0
        for Q in range(1, nq):
            if Q >= (np.int64(1) << np.int64(h + 1)):
                h += 1
            Qp = Q ^ (np.int64(1) << np.int64(h))
            pc[Q] = pc[Qp] + 1
            z = s_z[so + h]
            for s in range(d - pc[Q] + 1):
                F[Q, s] = z * F[Qp, s] + F[Qp, s + 1]
            table[to + Q] = F[Q, 0]


@njit(parallel=True, cache=True)
def _predict_kernel(X, out, p_tree, p_const, p_out, t_node_off, t_nint, t_leaf_off,
                    n_feat, n_thr, n_kind, n_nanl, n_zerol, n_cat_off, n_cat_len, n_lpos, n_rpos, cat_bits,
                    l_value):
    """out[i, k] = sum of the leaf values row i reaches, tree by tree in the booster's order (a tree of
    one leaf, ``p_tree < 0``, adds its constant ``p_const``): LightGBM's ``GBDT::PredictRaw``."""
    n = X.shape[0]
    for i in prange(n):
        for t in range(p_tree.shape[0]):
            k = p_out[t]
            tt = p_tree[t]
            if tt < 0:
                out[i, k] += p_const[t]
                continue
            no = t_node_off[tt]
            ni = t_nint[tt]
            node = 0
            while node < ni:
                g = no + node
                x = X[i, n_feat[g]]
                if n_kind[g] == 0:
                    left = np.int64(1) if x <= n_thr[g] else np.int64(0)
                    left = np.int64(n_zerol[g]) if (x >= -_KZERO and x <= _KZERO) else left
                    left = np.int64(n_nanl[g]) if x != x else left
                else:
                    left = _categorical_left(x, cat_bits, n_cat_off[g], n_cat_len[g])
                node = n_lpos[g] if left == 1 else n_rpos[g]
            out[i, k] += l_value[t_leaf_off[tt] + node - ni]


# ----------------------------------------------------------------------------------------------
# model precompute
# ----------------------------------------------------------------------------------------------
def _shapley_weights(max_d: int) -> np.ndarray:
    """W[d, k] = k! (d-1-k)! / d! for k < d, zero elsewhere (two spare zero columns)."""
    W = np.zeros((max_d + 1, max_d + 3))
    for d in range(1, max_d + 1):
        w = 1.0 / d
        W[d, 0] = w
        for k in range(1, d):
            w = w * k / (d - k)
            W[d, k] = w
    return W


def _category_bitset(threshold: str) -> np.ndarray:
    cats = [int(c) for c in str(threshold).split("||") if c != ""]
    n_words = max(cats) // 32 + 1 if cats else 0
    bits = np.zeros(n_words, np.uint32)
    for c in cats:
        bits[c // 32] |= np.uint32(1 << (c % 32))
    return bits


def _resolve_num_iteration(booster: lgb.Booster, num_iteration: int | None, total_iterations: int) -> int:
    """Same choice as ``Booster.predict``: None -> best_iteration if > 0 else all; <= 0 or too big -> all."""
    if num_iteration is None:
        num_iteration = booster.best_iteration if booster.best_iteration and booster.best_iteration > 0 else -1
    if num_iteration <= 0 or num_iteration > total_iterations:
        return total_iterations
    return int(num_iteration)


class FastTreeExplainer:
    """Exact path-dependent TreeSHAP contributions of a LightGBM booster's raw margin.

    Parameters
    ----------
    booster : lightgbm.Booster
        A trained booster (binary, regression, or any objective; multiclass gives LightGBM's
        ``n_classes * (n_features + 1)`` layout). Linear trees are not supported.
    num_iteration : int or None
        Iterations to explain. None (default) = ``booster.best_iteration`` if > 0, else all —
        the same default as ``booster.predict``.
    max_table_depth : int
        Leaves whose path has at most this many distinct features get a ``2**d`` table (O(d) per row);
        deeper leaves are computed per row in O(d**2). At most 20 (a table holds 2**d doubles).
    max_table_bytes : int
        Memory budget for all tables; when exceeded, the leaves with the most distinct features fall
        back to the per-row computation.
    block_rows : int
        Rows per parallel work item (trees are looped inside a block for cache reuse).

    Attributes
    ----------
    expected_value : float (ndarray of shape (n_classes,) for multiclass)
        The bias column: the cover-weighted mean margin.
    precompute_seconds : float
    nbytes : int
        Size of all precomputed arrays.
    n_table_leaves, n_fallback_leaves : int
    """

    def __init__(self, booster: lgb.Booster, num_iteration: int | None = None, *,
                 max_table_depth: int = 16, max_table_bytes: int = 512 * 2**20, block_rows: int = 128):
        if not 0 <= max_table_depth <= 20:
            raise ValueError("max_table_depth must be between 0 and 20")
        t0 = time.perf_counter()
        dump = booster.dump_model(num_iteration=-1)
        self.n_features = int(dump["max_feature_idx"]) + 1
        self.n_outputs = int(dump["num_tree_per_iteration"])
        self.pandas_categorical = booster.pandas_categorical
        self.block_rows = int(block_rows)
        info = dump["tree_info"]
        total_iterations = len(info) // self.n_outputs
        self.num_iteration = _resolve_num_iteration(booster, num_iteration, total_iterations)
        info = info[: self.num_iteration * self.n_outputs]
        self._parse(info)
        self._tabulate(max_table_depth, max_table_bytes)
        self.precompute_seconds = time.perf_counter() - t0

    # -- parsing ---------------------------------------------------------------------------------
    def _parse(self, info: list[dict]) -> None:
        F, K = self.n_features, self.n_outputs
        bias = [0.0] * K
        t_node_off, t_nint, t_leaf_off, t_nleaf, t_out_off = [], [], [], [], []
        n_feat, n_thr, n_kind, n_nanl, n_zerol, n_cat_off, n_cat_len = [], [], [], [], [], [], []
        n_lpos, n_rpos, n_slot = [], [], []
        cat_words: list[np.ndarray] = []
        n_cat_words = 0
        l_value, l_d, l_soff, l_plen, l_paths = [], [], [], [], []
        p_tree, p_const, p_out = [], [], []  # every tree in the booster's order, for predict_raw
        s_feat, s_z = [], []
        for ti, tree in enumerate(info):
            k = ti % K
            root = tree["tree_structure"]
            if "leaf_value" in root:  # single-leaf tree: bias only
                bias[k] += float(root["leaf_value"])
                p_tree.append(-1)
                p_const.append(float(root["leaf_value"]))
                p_out.append(k)
                continue
            p_tree.append(len(t_node_off))
            p_const.append(0.0)
            p_out.append(k)
            node_off, leaf_off = len(n_feat), len(l_value)
            leaves_by_index: dict[int, tuple[int, float]] = {}
            local_id: dict[int, int] = {}  # id(node dict) -> local id (>= 0 internal, < 0 ~leaf)
            children_of: list[tuple[int, dict, dict]] = []
            # preorder walk (parents before children). Entry: node, the path's distinct features (slot
            # order), their zero fractions, the path's internal nodes and (went_left, slot) per step.
            stack = [(root, [], [], [], [])]
            next_int = 0
            while stack:
                node, uniq, zs, pnodes, pmeta = stack.pop()
                if "leaf_value" in node:
                    if "leaf_coeff" in node:
                        raise NotImplementedError("linear trees are not supported")
                    local = len(l_value) - leaf_off
                    leaves_by_index[int(node["leaf_index"])] = (int(node["leaf_count"]), float(node["leaf_value"]))
                    l_value.append(float(node["leaf_value"]))
                    l_d.append(len(uniq))
                    l_soff.append(len(s_feat))
                    s_feat.extend(uniq)
                    s_z.extend(zs)
                    l_paths.append((pnodes, pmeta))
                    l_plen.append(len(pnodes))
                    local_id[id(node)] = ~local
                    continue
                local = next_int
                next_int += 1
                local_id[id(node)] = local
                children_of.append((node_off + local, node["left_child"], node["right_child"]))
                f = int(node["split_feature"])
                if f in uniq:
                    slot = uniq.index(f)
                else:
                    slot = len(uniq)
                n_feat.append(f)
                n_slot.append(slot)
                dleft = 1 if node["default_left"] else 0
                mtype = _MISSING[node["missing_type"]]
                if node["decision_type"] == "==":
                    bits = _category_bitset(node["threshold"])
                    n_kind.append(1)
                    n_thr.append(0.0)
                    n_nanl.append(0)  # unused: categorical NaN always goes right
                    n_zerol.append(0)
                    n_cat_off.append(n_cat_words)
                    n_cat_len.append(len(bits))
                    cat_words.append(bits)
                    n_cat_words += len(bits)
                elif node["decision_type"] == "<=":
                    thr = float(node["threshold"])
                    n_kind.append(0)
                    n_thr.append(thr)
                    # where NaN and (near-)zero go: constant per node (see LightGBM NumericalDecision)
                    zero_cmp = 1 if 0.0 <= thr else 0
                    n_nanl.append(dleft if mtype in (1, 2) else zero_cmp)
                    n_zerol.append(dleft if mtype == 1 else zero_cmp)
                    n_cat_off.append(0)
                    n_cat_len.append(0)
                else:
                    raise NotImplementedError(f"decision_type {node['decision_type']!r}")
                n_lpos.append(0)
                n_rpos.append(0)
                cover = float(node["internal_count"])
                children = []
                for side, child in ((1, node["left_child"]), (0, node["right_child"])):
                    ccount = float(child["leaf_count"] if "leaf_value" in child else child["internal_count"])
                    ratio = ccount / cover
                    cu, cz = list(uniq), list(zs)
                    if slot < len(uniq):
                        cz[slot] = ratio * cz[slot]  # same order as LightGBM: new * incoming
                    else:
                        cu.append(f)
                        cz.append(ratio)
                    children.append((child, cu, cz, pnodes + [local], pmeta + [(side, slot)]))
                stack.append(children[1])
                stack.append(children[0])
            # child positions in the kernel's per-tree mask array: internal nodes first, then leaves
            for g, left, right in children_of:
                a, b = local_id[id(left)], local_id[id(right)]
                n_lpos[g] = a if a >= 0 else next_int + ~a
                n_rpos[g] = b if b >= 0 else next_int + ~b
            # bias: LightGBM's Tree::ExpectedValue, leaves in leaf_index order
            total = float(root["internal_count"])
            ev = 0.0
            for li in range(len(leaves_by_index)):
                cnt, val = leaves_by_index[li]
                ev += (cnt / total) * val
            bias[k] += ev
            t_node_off.append(node_off)
            t_nint.append(next_int)
            t_leaf_off.append(leaf_off)
            t_nleaf.append(len(l_value) - leaf_off)
            t_out_off.append(k * (F + 1))

        i32, i64 = np.int32, np.int64
        self._t = dict(
            t_node_off=np.array(t_node_off, i64), t_nint=np.array(t_nint, i64),
            t_leaf_off=np.array(t_leaf_off, i64), t_nleaf=np.array(t_nleaf, i64),
            t_out_off=np.array(t_out_off, i64))
        self._n = dict(
            n_feat=np.array(n_feat, i32), n_thr=np.array(n_thr, np.float64), n_kind=np.array(n_kind, np.int8),
            n_nanl=np.array(n_nanl, np.int8), n_zerol=np.array(n_zerol, np.int8),
            n_cat_off=np.array(n_cat_off, i64), n_cat_len=np.array(n_cat_len, i64),
            n_lpos=np.array(n_lpos, i64), n_rpos=np.array(n_rpos, i64),
            n_bit=np.array([(1 << sl) if sl < _MASK_BITS else 0 for sl in n_slot], i64),
            cat_bits=np.concatenate(cat_words) if cat_words else np.zeros(1, np.uint32))
        self._l_value = np.array(l_value, np.float64)
        self._l_d = np.array(l_d, i64)
        self._l_soff = np.array(l_soff, i64)
        self._l_plen = np.array(l_plen, i64)
        self._l_paths = l_paths
        self._s_feat = np.array(s_feat, i32)
        self._s_z = np.array(s_z, np.float64)
        self._s_omz = 1.0 - self._s_z
        self._bias = np.array(bias, np.float64)
        self._p = dict(p_tree=np.array(p_tree, i64), p_const=np.array(p_const, np.float64),
                       p_out=np.array(p_out, i64))
        self.n_trees = len(info)
        self._max_int = max(t_nint, default=0) + 1
        self._max_leaf = max(t_nleaf, default=0) + 1
        self._max_d = int(self._l_d.max(initial=0))

    def _tabulate(self, max_table_depth: int, max_table_bytes: int) -> None:
        d = self._l_d
        cand = np.flatnonzero(d <= max_table_depth)
        cand = cand[np.argsort(d[cand], kind="stable")]
        sizes = np.int64(1) << d[cand]
        keep = np.cumsum(sizes) * 8 <= max_table_bytes
        tab = np.sort(cand[keep])
        l_toff = np.full(len(d), -1, np.int64)
        tab_sizes = np.int64(1) << d[tab]
        l_toff[tab] = np.concatenate([[0], np.cumsum(tab_sizes)[:-1]]) if len(tab) else []
        self._l_toff = l_toff
        self._build_tables()
        # root paths only for the fallback leaves
        fb = np.flatnonzero(l_toff < 0)
        l_poff = np.zeros(len(d), np.int64)
        p_node, p_dir, p_slot = [], [], []
        for lg in fb:
            pnodes, pmeta = self._l_paths[lg]
            l_poff[lg] = len(p_node)
            p_node.extend(pnodes)
            p_dir.extend(m[0] for m in pmeta)
            p_slot.extend(m[1] for m in pmeta)
        self._l_poff = l_poff
        self._l_plen = np.where(l_toff < 0, self._l_plen, 0).astype(np.int64)
        self._p_node = np.array(p_node, np.int32)
        self._p_dir = np.array(p_dir, np.uint8)
        self._p_slot = np.array(p_slot, np.int32)
        del self._l_paths
        self.n_table_leaves = int(len(tab))
        self.n_fallback_leaves = int(len(fb))

    def _build_tables(self) -> None:
        """The SHAP tables of the tabulated leaves (``_l_toff >= 0``), from the parsed arrays."""
        tab = np.flatnonzero(self._l_toff >= 0).astype(np.int64)
        self._table = np.empty(int((np.int64(1) << self._l_d[tab]).sum()), np.float64)
        self._W = _shapley_weights(max(self._max_d, 1))
        if len(tab):
            _build_tables(tab, self._l_d, self._l_soff, self._l_toff, self._s_z, self._W, self._table)

    def __getstate__(self) -> dict:
        """The parsed arrays without the SHAP tables (up to ``max_table_bytes``): rebuilt on load."""
        state = self.__dict__.copy()
        del state["_table"], state["_W"], state["precompute_seconds"]  # the time: not the same bytes twice
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        t0 = time.perf_counter()
        self._build_tables()
        self.precompute_seconds = time.perf_counter() - t0

    # -- public --------------------------------------------------------------------------------
    @property
    def expected_value(self):
        return float(self._bias[0]) if self.n_outputs == 1 else self._bias.copy()

    @property
    def nbytes(self) -> int:
        arrays = [*self._t.values(), *self._n.values(), self._l_value, self._l_d, self._l_soff, self._l_toff,
                  self._l_poff, self._l_plen, self._s_feat, self._s_z, self._s_omz, self._p_node, self._p_dir,
                  self._p_slot, self._table, self._W]
        return int(sum(a.nbytes for a in arrays))

    def to_matrix(self, X) -> np.ndarray:
        """The float64 matrix LightGBM would predict on (pandas conversion included)."""
        if isinstance(X, pd.DataFrame):
            X = _frame_matrix(X, self.pandas_categorical)
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError("X must be 2-dimensional")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float32)  # LightGBM predicts non-float arrays as float32
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the model expects {self.n_features}")
        X = np.ascontiguousarray(X, dtype=np.float64)
        return X if X.flags.writeable else X.copy()  # one numba signature: always a writeable C array

    def contributions(self, X) -> np.ndarray:
        """SHAP values: shape (n_rows, n_features + 1), last column the bias (LightGBM pred_contrib layout;
        multiclass: (n_rows, n_classes * (n_features + 1)))."""
        Xm = self.to_matrix(X)
        F1 = self.n_features + 1
        out = np.zeros((Xm.shape[0], self.n_outputs * F1))
        if Xm.shape[0] and len(self._t["t_node_off"]):
            # enough blocks for every thread on small batches
            block = max(8, min(self.block_rows, -(-Xm.shape[0] // numba.get_num_threads())))
            _shap_kernel(Xm, out, block, *self._t.values(), *self._n.values(),
                         self._l_value, self._l_d, self._l_soff, self._l_toff, self._l_poff, self._l_plen,
                         self._s_feat, self._s_z, self._s_omz, self._p_node, self._p_dir, self._p_slot,
                         self._table, self._W, self._max_int, self._max_leaf, self._max_d)
        for k in range(self.n_outputs):
            out[:, k * F1 + self.n_features] += self._bias[k]
        return out

    def predict_raw(self, X) -> np.ndarray:
        """The raw margin, bit for bit ``booster.predict(X, raw_score=True)``: shape (n_rows,)
        ((n_rows, n_classes) for multiclass)."""
        Xm = self.to_matrix(X)
        out = np.zeros((Xm.shape[0], self.n_outputs))
        if Xm.shape[0]:
            _predict_kernel(Xm, out, *self._p.values(), self._t["t_node_off"], self._t["t_nint"],
                            self._t["t_leaf_off"], *(self._n[k] for k in _PREDICT_NODE_ARRAYS), self._l_value)
        return out[:, 0] if self.n_outputs == 1 else out


_PREDICT_NODE_ARRAYS = ("n_feat", "n_thr", "n_kind", "n_nanl", "n_zerol", "n_cat_off", "n_cat_len", "n_lpos",
                        "n_rpos", "cat_bits")


def _frame_matrix(X: pd.DataFrame, pandas_categorical: list[list] | None) -> np.ndarray:
    """A DataFrame as LightGBM's ``_data_from_pandas`` turns it into a float matrix for prediction: a
    categorical column becomes its codes under the training categories (``pandas_categorical``, in
    column order; unseen or missing -> NaN), every other column its float value."""
    cat_cols = [i for i, dtype in enumerate(X.dtypes) if isinstance(dtype, pd.CategoricalDtype)]
    if pandas_categorical is not None and len(cat_cols) != len(pandas_categorical):
        raise ValueError("train and valid dataset categorical_feature do not match.")
    out = np.empty(X.shape, np.float64)
    known = dict(zip(cat_cols, pandas_categorical or [None] * len(cat_cols)))
    for j in range(X.shape[1]):
        col = X.iloc[:, j]
        if j in known:
            if known[j] is not None and list(col.cat.categories) != list(known[j]):
                col = col.cat.set_categories(known[j])
            codes = col.cat.codes.to_numpy()
            out[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


_CACHE: "weakref.WeakKeyDictionary[lgb.Booster, tuple[tuple, FastTreeExplainer]]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cached_explainer(booster: lgb.Booster, num_iteration: int | None) -> FastTreeExplainer:
    """One explainer per live booster, rebuilt when its iterations (or the requested ones) change."""
    key = (num_iteration, booster.current_iteration(), booster.best_iteration)
    with _CACHE_LOCK:
        hit = _CACHE.get(booster)
        if hit is not None and hit[0] == key:
            return hit[1]
    explainer = FastTreeExplainer(booster, num_iteration)
    with _CACHE_LOCK:
        _CACHE[booster] = (key, explainer)
    return explainer


def contributions(booster: lgb.Booster, X, engine: str = "fast", num_iteration: int | None = None) -> np.ndarray:
    """Per-row SHAP contributions of the raw margin: (n_rows, n_features + 1), last column = bias.

    ``engine="fast"``: :class:`FastTreeExplainer`, built on the first call for a booster and reused while
    that booster object lives and its iteration count is unchanged (build a new ``FastTreeExplainer``
    yourself after editing trees in place, e.g. ``set_leaf_output``).
    ``engine="lightgbm"``: ``booster.predict(X, num_iteration=num_iteration, pred_contrib=True)``.
    """
    if engine == "fast":
        return _cached_explainer(booster, num_iteration).contributions(X)
    if engine == "lightgbm":
        return np.asarray(booster.predict(X, num_iteration=num_iteration, pred_contrib=True))
    raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'lightgbm'")
