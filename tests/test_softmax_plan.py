"""The CUDA softmax launch plan (csrc/include/glo/softmax_plan.h), a pure host function, queried on the CPU through
glo_kernels_debug::softmax_plan with the properties of an H100, an H200 and an A100.

What is asserted: on H100 and H200 properties every row length from 1k to 262144 (powers of two, every multiple of
1024, odd lengths), float32 and bfloat16, forward and backward, is planned as a cached row (the input read once) with a
power-of-two cluster of at most 16 blocks and at most 200 KiB of shared memory per block; every plan fits the device's
limits and holds the whole row; the cluster is the smallest that fits; on an A100 (no clusters) the plan fits its limits
and says two reads exactly for the rows one SM cannot hold."""
import pytest
import torch

import glo_kernels  # noqa: F401  (loads glo_kernels._C, which registers glo_kernels_debug)

if not hasattr(torch.ops, "glo_kernels_debug") or not hasattr(torch.ops.glo_kernels_debug, "softmax_plan"):
    pytest.skip("the C++ extension glo_kernels._C is not built (it holds the plan function)", allow_module_level=True)

KIB = 1024
MAX_SMEM_ONE_BLOCK = 200 * KIB    # the plan's cap per block (one block per SM)
MAX_SMEM_TWO_BLOCKS = 96 * KIB    # per block when two 512-thread blocks share an SM
SMEM_RESERVE = 2 * KIB            # kept free for static shared memory and the hardware's 1 KiB per block
FWD_VPT = {"float32": 3, "bfloat16": 3}  # 16-byte register chunks per thread and cached tensor
BWD_VPT = 2

# (sm_count, smem_optin, cluster_launch, max_cluster_portable, max_cluster_nonportable, max_cluster_active)
DEVICES = {
    "H100": dict(sm_count=132, smem_optin=227 * KIB, cluster_launch=True, portable=8, nonportable=16, active=16),
    "H200": dict(sm_count=132, smem_optin=227 * KIB, cluster_launch=True, portable=8, nonportable=16, active=16),
    "A100": dict(sm_count=108, smem_optin=163 * KIB, cluster_launch=False, portable=1, nonportable=1, active=0),
}
FIELDS = ("path", "G", "C", "block", "grid", "vpt", "vs", "smem", "reads", "nonportable", "exchange")
CACHED, ONLINE = 0, 1
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}

ROW_LENGTHS = sorted(set(
    [1 << k for k in range(10, 19)]                            # 1k .. 256k
    + list(range(1024, 262144 + 1, 1024))                      # every multiple of 1024
    + [1000, 1023, 1025, 3001, 8191, 12345, 32769, 50001, 65537, 100003, 131071, 163841, 200001, 229375, 262143]
))


def plan(device, size, dtype, backward, rows=4096, allow_clusters=True, max_cluster=16, exchange=0, **overrides):
    d = dict(DEVICES[device], **overrides)
    out = torch.ops.glo_kernels_debug.softmax_plan(
        rows, size, DTYPE_BYTES[dtype], backward, d["sm_count"], d["smem_optin"], d["cluster_launch"], d["portable"],
        d["nonportable"], d["active"], allow_clusters, max_cluster, exchange)
    return dict(zip(FIELDS, out))


def _check_valid(p, size, dtype, backward, device, rows=4096):
    """The plan fits the device and, when it says one read, holds the whole row."""
    d = DEVICES[device]
    what = f"{device} {dtype} {'bwd' if backward else 'fwd'} size={size}: {p}"
    vec = 16 // DTYPE_BYTES[dtype]
    tensors = 2 if backward else 1
    assert 1 <= p["block"] <= 1024, what
    assert p["smem"] <= d["smem_optin"] - SMEM_RESERVE, what
    assert p["grid"] >= 1 and p["grid"] % p["C"] == 0, what
    if p["path"] == ONLINE:
        assert p["reads"] == 2 and p["C"] == 1 and p["smem"] == 0 and p["block"] == 1024, what
        return
    assert p["path"] == CACHED and p["reads"] == 1, what
    assert p["vpt"] == (BWD_VPT if backward else FWD_VPT[dtype]), what
    c = p["C"]
    assert c & (c - 1) == 0 and 1 <= c <= 16, what
    assert p["nonportable"] == (c > d["portable"]), what
    if not d["cluster_launch"]:
        assert c == 1, what
    if c > 1:  # the mbarrier exchange reuses its buffers safely only behind the block barrier of G > 32 (softmax.cu)
        assert p["G"] > 32 and p["block"] == p["G"], what
    if p["G"] <= 32:  # several rows per 256-thread block, registers only
        assert p["G"] & (p["G"] - 1) == 0 and p["block"] == 256 and p["vs"] == 0 and p["smem"] == 0 and c == 1, what
    else:
        assert p["G"] % 32 == 0 and p["block"] == p["G"], what
        assert p["smem"] == tensors * p["vs"] * p["G"] * 16, what
        cap = MAX_SMEM_TWO_BLOCKS if p["G"] <= 512 else MAX_SMEM_ONE_BLOCK
        assert p["smem"] <= cap, what
    # the C blocks of G threads, (vpt + vs) 16-byte chunks each, hold the row
    assert c * p["G"] * (p["vpt"] + p["vs"]) * vec >= size, what
    rows_per_block = 256 // p["G"] if p["G"] <= 32 else 1
    assert p["grid"] == min(-(-rows // rows_per_block), 1 << 20) * c, what


def _block_capacity(device, dtype, backward):
    """Most elements of one tensor one block can cache (1024 threads, the one-block shared-memory budget)."""
    d = DEVICES[device]
    tensors = 2 if backward else 1
    budget = min(MAX_SMEM_ONE_BLOCK, d["smem_optin"] - SMEM_RESERVE)
    chunks = (BWD_VPT if backward else FWD_VPT[dtype]) + budget // (tensors * 1024 * 16)
    return 1024 * chunks * (16 // DTYPE_BYTES[dtype])


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("device", ["H100", "H200"])
def test_hopper_reads_every_row_once(device, dtype, backward):
    for size in ROW_LENGTHS:
        p = plan(device, size, dtype, backward)
        assert p["path"] == CACHED and p["reads"] == 1, f"{device} {dtype} size={size}: two reads: {p}"
        _check_valid(p, size, dtype, backward, device)
        # the fewest blocks: half the cluster would not hold the row
        if p["C"] > 1:
            assert -(-size // (p["C"] // 2)) > _block_capacity(device, dtype, backward), f"size={size}: {p}"


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hopper_longest_rows(dtype, backward):
    """The 256k rows that used to take two passes (backward float32 > 163840) or clusters of 5 or 7."""
    p = plan("H100", 262144, dtype, backward)
    expected_c = {("float32", False): 8, ("float32", True): 8, ("bfloat16", False): 4, ("bfloat16", True): 4}
    assert p["reads"] == 1 and p["C"] == expected_c[dtype, backward] and p["block"] == 1024, p
    assert p["smem"] <= MAX_SMEM_ONE_BLOCK, p


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a100_valid_and_says_two_reads(dtype, backward):
    cap = _block_capacity("A100", dtype, backward)
    for size in ROW_LENGTHS:
        p = plan("A100", size, dtype, backward)
        _check_valid(p, size, dtype, backward, "A100")
        assert p["C"] == 1
        assert p["reads"] == (1 if size <= cap else 2), f"A100 {dtype} size={size}: {p} (one block holds {cap})"
    assert plan("A100", 262144, dtype, backward)["reads"] == 2


def test_small_rows_use_registers_only():
    for dtype, vec in DTYPE_BYTES.items():
        vec = 16 // vec
        for backward, vpt in ((False, FWD_VPT[dtype]), (True, BWD_VPT)):
            for size in (1, 7, 100, 1000, 512 * vpt * vec):
                p = plan("H100", size, dtype, backward, rows=1000)
                assert p["path"] == CACHED and p["smem"] == 0 and p["vs"] == 0 and p["C"] == 1, (size, p)
                assert p["G"] * p["vpt"] * vec >= size and p["block"] in (256, p["G"]), (size, p)
                _check_valid(p, size, dtype, backward, "H100", rows=1000)


def test_path_choices():
    # no clusters (GLO_SOFTMAX_CLUSTERS=0): one block per row, two reads beyond one SM's budget
    for size in ROW_LENGTHS:
        p = plan("H100", size, "float32", True, allow_clusters=False)
        assert p["C"] == 1
        assert p["reads"] == (1 if size <= _block_capacity("H100", "float32", True) else 2), (size, p)
    # portable clusters only: still one read at 256k (C = 8), never the non-portable attribute
    for dtype in DTYPE_BYTES:
        for backward in (False, True):
            p = plan("H100", 262144, dtype, backward, max_cluster=8)
            assert p["reads"] == 1 and p["C"] <= 8 and not p["nonportable"], p
    # a cap that is not a power of two is rounded down
    assert plan("H100", 262144, "float32", True, max_cluster=7)["reads"] == 2
    assert plan("H100", 131072, "float32", True, max_cluster=7)["C"] == 4
    # clusters the device cannot co-schedule are never planned
    assert plan("H100", 524288, "float32", True, active=8)["reads"] == 2
    p = plan("H100", 524288, "float32", True)  # beyond 256k: the non-portable cluster of 16
    assert p["reads"] == 1 and p["C"] == 16 and p["nonportable"], p
    _check_valid(p, 524288, "float32", True, "H100")


def test_exchange_choice_changes_nothing_else():
    """GLO_SOFTMAX_EXCHANGE=sync|mbarrier picks how cluster blocks exchange partial results; the plan (and so the
    summation tree) is otherwise the same."""
    for size in (1000, 70000, 131072, 262144, 524288):
        for backward in (False, True):
            a = plan("H100", size, "float32", backward, exchange=0)
            b = plan("H100", size, "float32", backward, exchange=1)
            assert a["exchange"] == 0 and b["exchange"] == 1
            assert {k: v for k, v in a.items() if k != "exchange"} == {k: v for k, v in b.items() if k != "exchange"}
    d = DEVICES["H100"]
    default = torch.ops.glo_kernels_debug.softmax_plan(4096, 262144, 4, False, d["sm_count"], d["smem_optin"],
                                                       d["cluster_launch"], d["portable"], d["nonportable"],
                                                       d["active"], True, 16)
    assert default[FIELDS.index("exchange")] == 1  # mbarrier, as softmax.cu's default
    with pytest.raises(RuntimeError, match=r"glo_kernels_debug\.softmax_plan: argument 'exchange'"):
        plan("H100", 1000, "float32", False, exchange=2)


def test_plan_is_a_function_of_its_arguments():
    a = [plan("H100", s, "float32", b) for s in (5000, 70000, 262144) for b in (False, True)]
    b = [plan("H100", s, "float32", b) for s in (5000, 70000, 262144) for b in (False, True)]
    assert a == b


def test_bad_arguments():
    with pytest.raises(RuntimeError, match=r"glo_kernels_debug\.softmax_plan: argument 'elem_bytes'"):
        torch.ops.glo_kernels_debug.softmax_plan(1, 100, 3, False, 132, 227 * KIB, True, 8, 16, 16, True, 16)


# ---- softmax along a strided dim (x as [outer, size, inner], inner > 1): plan_strided ----
TILES, COLUMNS = 2, 3
STRIDED_FIELDS = ("path", "W", "block", "grid", "smem", "reads")
TILE_STATIC_SMEM = 8 * KIB      # the tiles kernels' reduction slots (256 threads x 16 bytes x 2 for 16-bit)
TILE_PREFERRED_SMEM = 32 * KIB  # a wider tile is taken only while it stays this small
DIM_LENGTHS = [2, 3, 5, 21, 100, 1000, 1023, 3000, 4096, 6399, 6400, 6401, 8000, 9792, 9793, 12800, 12801, 50000]
INNERS = [2, 3, 4, 7, 8, 17, 64, 1000, 3136, 4096, 65536, 1 << 20]
ALL_DEVICES = ["H100", "H200", "A100"]
ALL_DTYPES = {"float32": 4, "bfloat16": 2, "float64": 8}


def strided_plan(device, outer, size, inner, elem_bytes, backward):
    d = DEVICES[device]
    out = torch.ops.glo_kernels_debug.softmax_strided_plan(outer, size, inner, elem_bytes, backward, d["sm_count"],
                                                           d["smem_optin"])
    return dict(zip(STRIDED_FIELDS, out))


def _tile_budget(device):
    return min(MAX_SMEM_ONE_BLOCK, DEVICES[device]["smem_optin"] - SMEM_RESERVE - TILE_STATIC_SMEM)


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("dtype", list(ALL_DTYPES))
@pytest.mark.parametrize("device", ALL_DEVICES)
def test_strided_dim_read_once_whenever_a_tile_fits(device, dtype, backward):
    """A tile of the whole dim times one 16-byte lane fits the block's shared memory: one read, else two; the tile
    fits the device with its static slots, its lanes are the fewest (a power of two, <= 256) whose columns cover the
    inner dim, halved while the tile takes more than 32 KiB (W = 1 may take more)."""
    eb = ALL_DTYPES[dtype]
    vec = 16 // eb
    tensors = 2 if backward else 1
    budget = _tile_budget(device)
    for size in DIM_LENGTHS:
        for inner in INNERS:
            outer = 3
            p = strided_plan(device, outer, size, inner, eb, backward)
            what = f"{device} {dtype} {'bwd' if backward else 'fwd'} [{outer}, {size}, {inner}]: {p}"
            lane = tensors * size * 16
            if lane > budget:
                assert p["path"] == COLUMNS and p["reads"] == 2 and p["smem"] == 0, what
                assert p["grid"] == min(-(-outer * inner // 256), 1 << 20), what
                continue
            assert p["path"] == TILES and p["reads"] == 1 and p["block"] == 256, what
            w = p["W"]
            assert w & (w - 1) == 0 and 1 <= w <= 256, what
            assert p["smem"] == w * lane, what
            assert p["smem"] + TILE_STATIC_SMEM + SMEM_RESERVE <= DEVICES[device]["smem_optin"], what
            cover = min(1 << max(0, (-(-inner // vec) - 1).bit_length()), 256)  # lanes whose columns cover inner
            assert w <= cover and (w == cover or 2 * w * lane > TILE_PREFERRED_SMEM), what
            assert w == 1 or p["smem"] <= TILE_PREFERRED_SMEM, what
            assert p["grid"] == min(outer * -(-inner // (w * vec)), 1 << 20), what


def test_strided_hopper_read_once_limits():
    """On an H100 / H200 a dim of 12800 elements (forward) or 6400 (backward) is read once, whatever inner and dtype;
    one element more is not."""
    for device in ("H100", "H200"):
        for eb in (2, 4, 8):
            for backward, longest in ((False, 12800), (True, 6400)):
                for inner in (2, 17, 3136, 1 << 20):
                    assert strided_plan(device, 2, longest, inner, eb, backward)["reads"] == 1
                    assert strided_plan(device, 2, longest + 1, inner, eb, backward)["reads"] == 2


def test_strided_plan_edges():
    # inner <= 1 is the contiguous path's, never a tile; an inner dim past the kernels' int offsets takes columns
    assert strided_plan("H100", 4, 100, 1, 4, False)["path"] == COLUMNS
    assert strided_plan("H100", 1, 100, (1 << 31) - 4096, 4, False)["path"] == COLUMNS
    assert strided_plan("H100", 1, 100, (1 << 31) - 4097, 4, False)["path"] == TILES
    # a segmentation map's classes (N, 21, 512, 512) along dim 1: a contiguous 256-lane tile, 21 x 4 KiB > 32 KiB: 64
    p = strided_plan("H100", 8, 21, 512 * 512, 4, False)
    assert p["path"] == TILES and p["W"] == 64 and p["smem"] == 21 * 64 * 16, p
    # empty shapes plan a grid of one block, which does nothing
    assert strided_plan("H100", 0, 100, 64, 4, False)["grid"] == 1
    with pytest.raises(RuntimeError, match=r"glo_kernels_debug\.softmax_strided_plan: argument 'elem_bytes'"):
        torch.ops.glo_kernels_debug.softmax_strided_plan(1, 100, 4, 3, False, 132, 227 * KIB)
