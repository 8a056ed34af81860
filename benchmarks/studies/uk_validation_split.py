"""Out-of-sample calibration of UK t2m priors on a validation split of the TRAINING period.

The shipped prior is trained on 2019-03-01..24 and tested on 03-25..31. To choose its
training length (or regularisation) without looking at the test week, train candidates on
03-01..20 only and score them on 03-22..24 (00 and 12 UTC, 6 fields; 03-21 is skipped so
that no validation field is an hour away from a training field):

    for S in 1750 3500; do
      hdm train configs/atmos/uk_t2m.yaml --out runs/uk_val_$S \\
        --set data.train_start=2019-03-01T00 --set data.train_end=2019-03-20T23 \\
        --set optim.steps=$S
    done
    python benchmarks/uk_validation_split.py runs/uk_val_1750 runs/uk_val_3500
    python benchmarks/uk_validation_split.py --inflation runs/uk_val_w16m32

The network size is the config's unless overridden; the table says which each row had
(``runs/uk_val_1750`` and ``runs/uk_val_3500`` were made with ``--set model.width=32
--set model.n_modes=24 --set model.n_modes_2=24``, the size shipped at the time, and
``runs/uk_val_w16m32`` with the size shipped now, 7,000 steps).

Each checkpoint downscales the 6 validation fields (coarse ×4 + the 12 benchmark stations,
simulated obs σ = 0.5 K, MMPS, Euler–Maruyama 50 steps, 16 members) and gets RMSE, fair
CRPS, spread–skill, 90 % coverage and the high-wavenumber power ratio. The table goes into
section ``uk-validation`` of BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from hdm.data.benchmark import machine_description, write_section
from hdm.pipelines.benchmark_uk import VALIDATION_TIMES, load_checkpoint_metadata, score_on_fields
from hdm.downscaling.prior import load_prior


def score(checkpoint: str, members: int = 16, seed: int = 0, inflation: str | None = None) -> dict:
    """Scores of one prior on the validation fields (see the module docstring)."""
    prior = load_prior(checkpoint)
    scores = score_on_fields(
        prior,
        VALIDATION_TIMES,
        sampler="em",
        steps=50,
        members=members,
        seed=seed,
        inflation=inflation,
    )
    return {
        "checkpoint": checkpoint,
        "train_steps": load_checkpoint_metadata(prior.path).get("steps"),
        "train_period": prior_train_period(prior),
        "network": network_size(prior),
        **scores,
        "power": scores["spectrum_ratio"],
    }


def prior_train_period(prior) -> str:
    """'START..END' of the fields a prior was trained on, from the config.yaml beside it
    (empty bounds: the dataset's training split, 2019-03-01..24)."""
    from hdm.pipelines.config import load_train_config

    cfg = load_train_config(Path(prior.path).parent / "config.yaml")
    return f"{cfg.data.train_start or '2019-03-01'}..{cfg.data.train_end or '2019-03-24'}"


HEADER = (
    "| checkpoint | network | trained on | steps | RMSE K | fair CRPS | spread–skill "
    "| cov. 90 % | power ratio |\n|---|---|---|---|---|---|---|---|---|"
)


def network_size(prior) -> str:
    """'width W, M1 × M2 modes' of a prior's TimeConditionedFNO."""
    cfg = prior.denoiser.backbone.config
    m1, m2 = cfg["n_modes"]
    return f"width {cfg['width']}, {m1} × {m2} modes"


def main_inflation(checkpoints: list[str]) -> None:
    """Each prior with and without ``inflation="auto"`` on the validation fields: does the
    inflation over-inflate where the prior is not out of its depth? Section
    ``uk-validation-inflation``."""
    rows = [score(c, inflation=i) for c in checkpoints for i in (None, "auto")]
    table = "\n".join(
        f"| `{r['checkpoint']}` | {'auto' if r['inflation'] != 1 else 'none'} | "
        f"{r['inflation']:.3f} | {r['rmse']:.3f} | {r['crps']:.3f} | {r['spread_skill']:.3f} | "
        f"{r['coverage90']:.3f} | {r['power']:.3f} |"
        for r in rows
    )
    body = f"""## UK t2m: the adaptive inflation on the validation split

Command: `python benchmarks/uk_validation_split.py --inflation {" ".join(checkpoints)}` ·
{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {machine_description()}

The validation fields of section uk-validation (2019-03-22..24 at 00 and 12 UTC, never seen
by priors trained on 03-01..20; not the test week), coarse ×4 + 12 stations, MMPS, EM 50
steps, 16 members, each prior without and with `inflation="auto"` (λ from the station
residuals about the coarse field against the prior's own, 64 draws; bounds [1, 2]).

| checkpoint | inflation | λ | RMSE K | fair CRPS | spread–skill | cov. 90 % | power ratio |
|---|---|---|---|---|---|---|---|
{table}
"""
    write_section(Path("BENCHMARKS.md"), "uk-validation-inflation", body)
    for r in rows:
        print(json.dumps(r))


def main(checkpoints: list[str]) -> None:
    rows = [score(c) for c in checkpoints]
    table = "\n".join(
        f"| `{r['checkpoint']}` | {r['network']} | {r['train_period']} | {r['train_steps']} | "
        f"{r['rmse']:.3f} | "
        f"{r['crps']:.3f} | {r['spread_skill']:.3f} | {r['coverage90']:.3f} | "
        f"{r['power']:.3f} |"
        for r in rows
    )
    body = f"""## UK t2m: validation split inside the training period

Command: `python benchmarks/uk_validation_split.py {" ".join(checkpoints)}` (the priors made
by the `hdm train` commands in the script's docstring) · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
· {machine_description()}

Priors trained on 2019-03-01..20 only, scored on 2019-03-22..24 at 00 and 12 UTC (6 fields
they never saw; the test week is not used): coarse ×4 + 12 stations, MMPS, EM 50 steps,
16 members.

{HEADER}
{table}
"""
    write_section(Path("BENCHMARKS.md"), "uk-validation", body)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    args = sys.argv[1:]
    with_inflation = "--inflation" in args
    args = [a for a in args if a != "--inflation"]
    if not args:
        sys.exit(
            "usage: python benchmarks/uk_validation_split.py [--inflation] CHECKPOINT_DIR [...]"
        )
    (main_inflation if with_inflation else main)(args)
