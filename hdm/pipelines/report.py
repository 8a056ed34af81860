"""Text reports of the commands: what ``hdm evaluate`` and ``hdm demo`` print."""

from __future__ import annotations

__all__ = ["format_downscale_report", "format_functional_report"]


def format_functional_report(r: dict) -> str:
    """The metrics of ``evaluate_functional`` as a few lines."""

    def ci(key):
        lo, hi = r[key]
        return f"[{lo:.1f}, {hi:.1f}]"

    lines = [
        f"dataset {r['dataset']}: {r['n_generated']} generated vs {r['n_test']} test curves "
        f"({r['grid']}; {r.get('sampler', '')}, {r.get('nfe', 0)} NFE)",
        f"  power, rigorous (n={r['n_per_side']}/side): {r['power_rigorous']:.1f}% "
        f"{ci('power_rigorous_ci')}   null calibration (real held-out): "
        f"{r['power_null']:.1f}% {ci('power_null_ci')}",
        f"  power, HDM-compatible (10 vs 10): {r['power_hdm']:.1f} ± {r['power_hdm_pm']:.1f}",
        f"  MMD²: {r['mmd2']:.2e}   floor (real vs real): {r['mmd2_floor']:.2e}",
        f"  mean error (rel. L²): {r['mean_rel_l2']:.3f}   floor: {r['mean_rel_l2_floor']:.3f}",
        f"  covariance error (rel. HS): {r['cov_rel_hs']:.3f}   floor: {r['cov_rel_hs_floor']:.3f}",
    ]
    if "plot" in r:
        lines.append(f"  plot: {r['plot']}")
    return "\n".join(lines)


def format_downscale_report(report: dict) -> str:
    """The scores of ``evaluate_downscale`` as a short table (one per variable)."""
    if "variables" in report:
        return "\n".join(_variable_report(r) for r in report["variables"].values())
    return _variable_report(report)


def _variable_report(report: dict) -> str:
    units = report["units"]
    lines = [
        f"{report['variable']} ({units}), {report['times']} times x {report['members']} members"
    ]
    rows = [
        ("RMSE ensemble mean", "rmse"),
        ("RMSE bilinear", "rmse_bilinear"),
        ("RMSE bicubic", "rmse_bicubic"),
        ("RMSE kriging", "rmse_kriging"),
        ("RMSE OI", "rmse_oi"),
        ("CRPS (fair)", "crps"),
        ("CRPS kriging (Gaussian)", "crps_kriging"),
        ("CRPS OI (Gaussian)", "crps_oi"),
        ("spread-skill", "spread_skill"),
        ("inflation λ", "inflation"),
        ("coverage 90%", "coverage90"),
        ("coverage 90% kriging", "coverage90_kriging"),
        ("coverage 90% OI", "coverage90_oi"),
        ("held-out RMSE", "heldout_rmse"),
        ("held-out RMSE kriging", "heldout_rmse_kriging"),
        ("held-out RMSE OI", "heldout_rmse_oi"),
        ("spectrum ratio (high k)", "spectrum_ratio"),
        ("spectrum ratio bicubic", "spectrum_ratio_bicubic"),
        ("spectrum ratio kriging", "spectrum_ratio_kriging"),
    ]
    for label, key in rows:
        if report.get(key) is not None:
            lines.append(f"  {label:<26} {report[key]:.4g}")
        elif key in ("coverage50", "coverage90") and key in report:
            # null: more than the members resolve (hdm.metrics.probabilistic.coverage)
            lines.append(f"  {label:<26} unavailable ({report['members']} members)")
    for score in ("rmse", "crps", "heldout_rmse"):
        best = report.get(f"best_baseline_{score}")
        if best is not None:
            label = f"best baseline {score.replace('_', ' ')}"
            lines.append(f"  {label:<26} {best['value']:.4g} ({best['baseline']})")
    return "\n".join(lines)
