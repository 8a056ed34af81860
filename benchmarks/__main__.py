"""``python -m benchmarks NAME [options]``: run one benchmark or study.

Each writes its sections of BENCHMARKS.md (``--benchmarks-file FILE`` for another file)
with the command that produced them, the machine and the date; ``python -m benchmarks
NAME --help`` gives its options. The names are listed by ``python -m benchmarks --help``.
Nothing is imported before a name is chosen, so the listing is instant.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.report import ENTRY_POINT


@dataclass(frozen=True)
class Entry:
    """A runnable name: its module (with ``main(argv)``), what it measures and the
    BENCHMARKS.md sections it writes."""

    module: str
    what: str
    sections: str


BENCHMARKS: dict[str, Entry] = {
    "functional": Entry(
        "benchmarks.functional",
        "1-D datasets: power and moments vs floors, Q vs white noise, samplers, grids",
        "functional",
    ),
    "data": Entry(
        "benchmarks.data",
        "data layer: 21.6 GB streamed lazily, 5.2 GB zarr store, ERA5 loader",
        "data",
    ),
    "batch": Entry(
        "benchmarks.batch",
        "batch downscaling: fields per minute with 1 and 2 Dask workers",
        "batch",
    ),
    "downscale": Entry(
        "benchmarks.downscale",
        "GRF exactness, NFE speed, UK test week, sampler and Q choice (--parts)",
        "downscale-{grf,grf64,speed,uk,sampler,q} (one per part)",
    ),
}

STUDIES: dict[str, Entry] = {
    "allocator_speed": Entry(
        "benchmarks.studies.allocator_speed",
        "NFE and field times under glibc and huge-page settings (prints only)",
        "(none)",
    ),
    "fno_chunking": Entry(
        "benchmarks.studies.fno_chunking",
        "per-NFE time of the UK FNO by CPU chunk budget",
        "fno-chunking",
    ),
    "network_ensemble_speed": Entry(
        "benchmarks.studies.network_ensemble_speed",
        "sampling with K networks: vectorised (vmap) against one network after the other",
        "network-ensemble-speed",
    ),
    "grf_trained_64": Entry(
        "benchmarks.studies.grf_trained_64",
        "GRF exactness at 64 × 64 with an FNO trained on prior draws",
        "downscale-grf64-trained",
    ),
    "spectral_layer": Entry(
        "benchmarks.studies.spectral_layer",
        "spectral layers: truncated DFT products against full FFTs",
        "spectral-layer",
    ),
    "uk_cg_steps": Entry(
        "benchmarks.studies.uk_cg_steps",
        "UK t2m: MMPS conjugate-gradient steps on training or validation fields",
        "uk-cg-steps, uk-cg-steps-validation",
    ),
    "rhine_variables": Entry(
        "benchmarks.studies.rhine_variables",
        "Rhine box: a joint u10/v10/d2m/sp prior with statics, per-variable scores",
        "rhine-variables",
    ),
    "uk_evaluation": Entry(
        "benchmarks.studies.uk_evaluation",
        "UK t2m: periods x factors x station sets against kriging, realism, member figure",
        "uk-evaluation",
    ),
    "gpu_check": Entry(
        "benchmarks.gpu_check",
        "sampling on a GPU (--device): GRF exactness, one UK field, a 1-GPU batch run",
        "gpu-check",
    ),
    "rhine_profiles": Entry(
        "benchmarks.studies.rhine_profiles",
        "W-Europe OSSE: soundings at IGRA2 stations fused into a u/v/q pressure-level prior",
        "rhine-profiles",
    ),
    "fast_sampling": Entry(
        "benchmarks.studies.fast_sampling",
        "functional models: dpm2m and v3 at NFE 5/10/20, each ± teleportation, vs Heun/EM",
        "fast-sampling",
    ),
    "sphere_covariance": Entry(
        "benchmarks.studies.sphere_covariance",
        "the spherical Q: variance by latitude, one seed on two resolutions, cost per draw",
        "sphere-covariance",
    ),
    "sphere_exactness": Entry(
        "benchmarks.studies.sphere_exactness",
        "the sphere: MMPS/SDA with the oracle denoiser vs the closed form, IGRA2 stations",
        "sphere-exactness",
    ),
    "sphere_prior": Entry(
        "benchmarks.studies.sphere_prior",
        "the sphere: a trained shallow-water prior, spectra and two-sample power vs test states",
        "sphere-prior",
    ),
    "sphere_downscale": Entry(
        "benchmarks.studies.sphere_downscale",
        "the sphere: shallow-water downscaling, spherical vs planar prior vs bilinear/kriging",
        "sphere-downscale",
    ),
    "sphere_spread_degrees": Entry(
        "benchmarks.studies.sphere_spread_degrees",
        "the sphere: the share of a downscaled ensemble's spread at degrees the truth lacks",
        "sphere-spread-degrees",
    ),
    "sphere_guided_stability": Entry(
        "benchmarks.studies.sphere_guided_stability",
        "the sphere: guided members that run away, by prior and Heun steps (validation)",
        "sphere-guided-stability",
    ),
    "sphere_calibration": Entry(
        "benchmarks.studies.sphere_calibration",
        "the sphere: spread-skill with exact cells vs cells with the assumed noise (validation)",
        "sphere-calibration",
    ),
    "teleport_levels": Entry(
        "benchmarks.studies.teleport_levels",
        "teleportation: the level ς* below which the network beats the Gaussian, per model",
        "teleport-levels",
    ),
    "uk_generalisation": Entry(
        "benchmarks.studies.uk_generalisation",
        "UK t2m: the prior's denoising error on its training days against unseen days",
        "uk-generalisation",
    ),
    "uk_coarse_grids": Entry(
        "benchmarks.studies.uk_coarse_grids",
        "UK t2m: coarse fields on offset and non-integer grids (conservative regridding)",
        "uk-coarse-grids",
    ),
    "uk_point_coarse": Entry(
        "benchmarks.studies.uk_point_coarse",
        "UK t2m: a 1° field of grid-point values read as points and as cell means",
        "uk-point-coarse",
    ),
    "uk_edge_calibration": Entry(
        "benchmarks.studies.uk_edge_calibration",
        "UK t2m: spread and error along the domain edges of a stored run",
        "uk-edges",
    ),
    "uk_gaussian_shrinkage": Entry(
        "benchmarks.studies.uk_gaussian_shrinkage",
        "UK t2m: the teleport Gaussian shrunk toward the low-passed Q, both validation splits",
        "uk-gaussian-shrinkage",
    ),
    "uk_teleport_scale": Entry(
        "benchmarks.studies.uk_teleport_scale",
        "UK t2m: the teleport Gaussian widened to N(m, s² C), both validation splits",
        "uk-teleport-scale",
    ),
    "uk_network_ensemble": Entry(
        "benchmarks.studies.uk_network_ensemble",
        "UK t2m: one network against an ensemble of K seeds' networks, both validation splits",
        "uk-network-ensemble",
    ),
    "uk_bagged_ensemble": Entry(
        "benchmarks.studies.uk_bagged_ensemble",
        "UK t2m: networks trained on resampled days (bagging), both validation splits",
        "uk-bagged-ensemble",
    ),
    "uk_regime_coverage": Entry(
        "benchmarks.studies.uk_regime_coverage",
        "UK t2m: priors trained on rough days against calm days, scored on rough days",
        "uk-regime-coverage",
    ),
    "uk_inflation": Entry(
        "benchmarks.studies.uk_inflation",
        "UK t2m: the adaptive inflation λ by period",
        "uk-inflation",
    ),
    "uk_spread_by_time": Entry(
        "benchmarks.studies.uk_spread_by_time",
        "UK t2m: does the spread follow the error from time to time (stored runs)",
        "uk-spread-by-time",
    ),
    "uk_validation_split": Entry(
        "benchmarks.studies.uk_validation_split",
        "UK t2m: priors scored on a validation split of the training period",
        "uk-validation, -inflation, -samplers, -factors, -teleport",
    ),
    "uk_zero_shot_prior": Entry(
        "benchmarks.studies.uk_zero_shot_prior",
        "UK t2m: the prior alone at 2× its grid, paired unconditional draws",
        "uk-zero-shot-prior",
    ),
}

ENTRIES: dict[str, Entry] = {**BENCHMARKS, **STUDIES}


def usage() -> str:
    """The listing printed by ``python -m benchmarks --help``."""
    width = max(map(len, ENTRIES))

    def block(entries: dict[str, Entry]) -> list[str]:
        lines = []
        for name, e in entries.items():
            lines += [f"  {name:<{width}}  {e.what}", f"  {'':<{width}}    sections: {e.sections}"]
        return lines

    return "\n".join(
        [
            f"usage: {ENTRY_POINT} NAME [--quick] [--benchmarks-file FILE] [options]",
            f"       {ENTRY_POINT} NAME --help",
            "",
            "Runs one benchmark; it writes its sections of BENCHMARKS.md with the command,",
            "the machine and the date. See benchmarks/README.md.",
            "",
            "benchmarks:",
            *block(BENCHMARKS),
            "",
            "studies (benchmarks/studies/):",
            *block(STUDIES),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``argv[0]`` with the rest of ``argv``; 0 on success, 2 for a bad name."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    name = name.removeprefix("studies.")  # the module path of a study names it too
    if name not in ENTRIES:
        close = difflib.get_close_matches(name, ENTRIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(
            f"{ENTRY_POINT}: unknown benchmark {name!r}{hint}; '{ENTRY_POINT} --help' lists them",
            file=sys.stderr,
        )
        return 2
    result = importlib.import_module(ENTRIES[name].module).main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
