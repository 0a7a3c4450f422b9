"""A simulated year of the example community as Datadis-style CSVs (for ``ioe coefficients
optimise`` and ``ioe settle``).

Not committed data: ~260 000 rows are regenerated on demand (deterministic, ~30 s) from the
project's simulator (``devtools.simulator``: the same household load profiles and PV model the
demo streams), with the example registry's members and plant. Hour labels follow Datadis
(local end of the hour, ``24:00``, 23/25 rows on the clock-change days) and are computed with
``zoneinfo`` alone.

    python tests/streams/fixtures_optimise/make_example_year.py OUT_DIR [--year 2025]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from devtools.simulator import load, pv
from ioe.registry import load_registry

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = ROOT / "infra" / "examples" / "community.yaml"
HOUR = 3_600_000
SEED = 1  # the simulator's default seed


def label(end_ms: int, tz: ZoneInfo) -> tuple[str, str]:
    """Datadis ``(YYYY/MM/DD, HH:00)`` of the hour ending at ``end_ms``."""
    start = datetime.fromtimestamp((end_ms - HOUR) / 1000, tz)
    return start.strftime("%Y/%m/%d"), f"{start.hour + 1:02d}:00"


def write_year(out: Path, year: int = 2025, load_step_s: float = 900.0,
               pv_step_s: float = 300.0) -> tuple[Path, Path]:
    """Write ``consumption.csv`` and ``generation.csv`` of ``year`` into ``out``."""
    registry = load_registry(REGISTRY)
    community = next(iter(registry.communities.values()))
    tz = ZoneInfo(community.timezone)
    start = int(datetime(year, 1, 1, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(year + 1, 1, 1, tzinfo=tz).timestamp() * 1000)
    hours = range(start, end, HOUR)
    labels = [label(h + HOUR, tz) for h in hours]
    out.mkdir(parents=True, exist_ok=True)
    plant = community.plants[0]
    model = pv.PlantModel(key=plant.id, peak_power_kw=plant.peak_power_kw,
                          latitude=plant.latitude, longitude=plant.longitude,
                          tilt_deg=plant.tilt_deg, azimuth_deg=plant.azimuth_deg, seed=SEED)
    generation = out / "generation.csv"
    with generation.open("w", encoding="utf-8") as f:
        f.write("cups;date;time;generation_kwh\n")
        for h, (day, time) in zip(hours, labels, strict=True):
            kwh = pv.energy_wh(model, h, h + HOUR, pv_step_s) / 1000
            f.write(f"{plant.cups};{day};{time};{kwh:.3f}\n")
    consumption = out / "consumption.csv"
    with consumption.open("w", encoding="utf-8") as f:
        f.write("cups;date;time;consumption_kwh\n")
        for member in community.members:
            home = load.make_household(member.id, SEED)
            for h, (day, time) in zip(hours, labels, strict=True):
                kwh = load.energy_wh(home, h, h + HOUR, load_step_s, community.timezone) / 1000
                f.write(f"{member.cups};{day};{time};{kwh:.3f}\n")
    return consumption, generation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--year", type=int, default=2025)
    args = parser.parse_args()
    started = datetime.now(UTC)
    paths = write_year(args.out, args.year)
    print(f"wrote {', '.join(map(str, paths))} in {(datetime.now(UTC) - started).seconds} s")


if __name__ == "__main__":
    main()
