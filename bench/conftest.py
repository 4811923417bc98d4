"""Cross-result numbers of the pytest-benchmark suite, added to each result's extra_info in the JSON it writes:
GB/s, the copy's GB/s and the percentage of it reached, and the speedups over eager and torch.compile of the same
op, direction, dtype and shape measured in the same run."""


def enrich(benchmarks: list) -> None:
    """benchmarks: pytest-benchmark's JSON entries (dicts with "extra_info" and "stats")."""
    by_key, copies = {}, {}
    for b in benchmarks:
        info, stats = b.get("extra_info", {}), b.get("stats") or {}
        median = stats.get("median")
        if not median or "min_bytes" not in info:
            continue
        info["GBps"] = info["min_bytes"] / median / 1e9
        if info.get("op") == "copy":
            copies[(info["dtype"], info["numel"], info["device"])] = info["GBps"]
        else:
            key = (info["op"], info["direction"], info["dtype"], tuple(info["shape"]), info["device"])
            by_key.setdefault(key, {})[info["provider"]] = (median, info)
    for key, provs in by_key.items():
        eager = provs.get("eager")
        comp = provs.get("compile")
        copy = copies.get((key[2], provs[next(iter(provs))][1]["numel"], key[4]))
        for median, info in provs.values():
            if eager:
                info["speedup_vs_eager"] = eager[0] / median
                info["saved_for_backward_bytes_eager"] = eager[1]["saved_for_backward_bytes"]
            if comp:
                info["speedup_vs_compile"] = comp[0] / median
            if copy:
                info["copy_GBps"] = copy
                info["pct_of_copy"] = 100 * info["GBps"] / copy


def pytest_benchmark_update_json(config, benchmarks, output_json):
    enrich(output_json.get("benchmarks", []))
