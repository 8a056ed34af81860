"""Per-NFE time at 64² and 128² (16 members), to compare glibc allocator settings.

    python benchmarks/allocator_speed.py                       # the default allocator
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        python benchmarks/allocator_speed.py                   # freed memory kept
    /usr/bin/time -f "%e s wall %S s system %M KB" python benchmarks/allocator_speed.py

The numbers are quoted in BENCHMARKS.md (section downscale-speed) and hdm/allocator.py.
"""

from hdm.pipelines.benchmark_downscale import sampling_speed

if __name__ == "__main__":
    for row in sampling_speed(sizes=(64, 128), repeats=1, budget_s=40):
        guided = row.get("guided_ms")
        print(
            f"{row['n']}x{row['n']}: {row['plain_ms']:.0f} ms per plain NFE"
            + (f", {guided:.0f} ms per guided NFE" if guided else "")
        )
