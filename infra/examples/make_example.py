"""Regenerate the example community (run once; the output is committed).

Deterministic: the same seed gives the same CUPS, devices and coefficients, so tests and docs
can refer to them. CUPS carry real check letters (python-stdnum computes them).
"""

from __future__ import annotations

import random
from pathlib import Path

from stdnum.es import cups as stdnum_cups

HERE = Path(__file__).parent
rng = random.Random(244_2019)


def make_cups(distributor: str, suffix: str = "") -> str:
    body = distributor + "".join(rng.choice("0123456789") for _ in range(12))
    return "ES" + body + stdnum_cups.calc_check_digits(body) + suffix


NAMES = ["Ana García", "Josep Martí", "Lucía Pérez", "Vicent Ferrer", "María López",
         "Pau Soler", "Carmen Navarro", "Joan Ribes", "Elena Ruiz", "Andreu Puig",
         "Rosa Sanz", "Xavier Vidal", "Isabel Moreno", "Jordi Mas", "Pilar Gil",
         "Toni Llorca", "Marta Romero", "Salva Boix", "Laura Ortega", "Enric Bosch",
         "Teresa Molina", "Miquel Serra", "Cristina Blasco", "Ramon Pons", "Nuria Castillo",
         "David Company", "Silvia Herrera", "Pere Fuster", "Amparo Vila", "Sergio Domínguez"]
DECODERS = ["shelly-gen1"] * 10 + ["shelly-gen2"] * 8 + ["tasmota"] * 7 + ["emonhub"] * 5


def device_for(index: int, member: str, decoder: str) -> list[str]:
    mac = "".join(rng.choice("0123456789ABCDEF") for _ in range(12))
    if decoder == "shelly-gen1":
        topic_id = f"shellyem-{mac}"
        device_id = f"{topic_id}:0"
    elif decoder == "shelly-gen2":
        topic_id = f"shellypro3em-{mac.lower()}"
        device_id = f"{topic_id}:0"
    elif decoder == "tasmota":
        topic_id = f"tasmota_{mac[-6:]}"
        device_id = topic_id
    else:
        topic_id = f"emontx{index}"
        device_id = f"{topic_id}:1"
    return [
        f"      - id: {device_id}",
        "        role: consumption",
        f"        member: {member}",
        f"        protocol: {{type: mqtt, decoder: {decoder}, topic_id: {topic_id}}}",
        "        expected_interval_s: 10",
    ]


#: m03's water heater behind a Shelly 1PM: the load the example rules switch on the member's
#: surplus (infra/examples/rules.yaml, ``ioe demo``); a circuit apart from the household meter
HEATER = [
    "      # m03's water heater behind a Shelly 1PM, switched by infra/examples/rules.yaml",
    "      - id: shelly1pm-termo-m03:0",
    "        role: consumption",
    "        member: m03",
    "        rated_power_w: 1500",
    "        protocol: {type: mqtt, decoder: shelly-gen1, topic_id: shelly1pm-termo-m03, "
    "controllable: true}",
    "        expected_interval_s: 10",
]


def main() -> None:
    plant_cups = make_cups("0021", "1F")
    cau = plant_cups + "A001"
    members = []
    for i, name in enumerate(NAMES, start=1):
        members.append((f"m{i:02d}", name, make_cups("0021"),
                        rng.choice([3.45, 4.6, 5.75, 6.9]), DECODERS[i - 1]))
    weights = [rng.choice([1, 1, 1, 2, 2, 3]) for _ in members]
    total = sum(weights)
    betas = [round(w / total, 6) for w in weights]
    betas[-1] = round(1 - sum(betas[:-1]), 6)
    coeff_name = f"coefficients/{cau}_2026.txt"
    (HERE / coeff_name).write_text(
        "".join(f"{m[2]};{b:.6f}\n".replace(".", ",") for m, b in zip(members, betas, strict=True)),
        encoding="utf-8")
    lines = [
        "# Example energy community: 30 households sharing one 30 kWp plant (two inverters).",
        "# Regenerate with `python infra/examples/make_example.py`.",
        "communities:",
        "  - id: ce-benimaclet",
        "    name: Comunitat Energètica Benimaclet",
        f"    cau: {cau}",
        "    timezone: Europe/Madrid",
        "    location: {latitude: 39.4863, longitude: -0.3586}",
        "    prices: {energy_eur_kwh: 0.145, surplus_eur_kwh: 0.06}",
        "    plants:",
        "      - id: plant-1",
        "        name: Cubierta CEIP Benimaclet",
        f"        cups: {plant_cups}",
        "        peak_power_kw: 30",
        "        tilt_deg: 15",
        "        azimuth_deg: 180",
        "    members:",
    ]
    for mid, name, cups, power, _ in members:
        lines += [f"      - id: {mid}", f"        name: {name}", f"        cups: {cups}",
                  f"        contracted_power_kw: {power}", "        tariff: 2.0TD"]
    lines += ["    devices:",
              "      - id: inv-sunspec-1",
              "        role: generation",
              "        plant: plant-1",
              "        rated_power_w: 15000",
              "        protocol: {type: modbus, host: 127.0.0.1, port: 5020, unit: 1, map: sunspec}",
              "        expected_interval_s: 10",
              "      - id: inv-huawei-1",
              "        role: generation",
              "        plant: plant-1",
              "        rated_power_w: 15000",
              "        protocol: {type: modbus, host: 127.0.0.1, port: 5021, unit: 1, map: huawei-sun2000}",
              "        expected_interval_s: 10",
              "      # the grid meter behind the Huawei inverter (plant export), read by the same edge",
              "      - id: inv-huawei-1:meter",
              "        role: grid",
              "        plant: plant-1",
              "        protocol: {type: modbus, via: inv-huawei-1}",
              "        expected_interval_s: 10"]
    for i, (mid, _, _, _, decoder) in enumerate(members, start=1):
        lines += device_for(i, mid, decoder)
    lines += HEATER
    lines += ["    coefficients:", "      - effective_from: 2026-01-01", f"        file: {coeff_name}"]
    (HERE / "community.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
