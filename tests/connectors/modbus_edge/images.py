"""Register images built by hand from the vendors' published layouts (no code under test).

Each helper writes the words a real device would hold, so the decoded values can be checked
against numbers worked out by hand in the tests.
"""

from __future__ import annotations

import struct

REGISTRY_YAML = """
communities:
  - id: ce-test
    name: Test community
    timezone: Europe/Madrid
    location: {latitude: 39.48, longitude: -0.36}
    members:
      - {id: m01, cups: ES0021380404050463BV, contracted_power_kw: 3.45}
    plants:
      - {id: plant-1, peak_power_kw: 30}
    devices:
{devices}
"""


def registry_yaml(device_ids: list[str], community: str = "ce-test") -> str:
    lines = "".join(f"      - {{id: '{d}', role: generation, plant: plant-1}}\n"
                    for d in device_ids)
    return REGISTRY_YAML.replace("ce-test", community).replace("{devices}\n", lines)


def u16(v: int) -> list[int]:
    return [v & 0xFFFF]


def i16(v: int) -> list[int]:
    return [v & 0xFFFF]


def u32(v: int, order: str = "big") -> list[int]:
    words = [(v >> 16) & 0xFFFF, v & 0xFFFF]
    return words if order == "big" else words[::-1]


def i32(v: int, order: str = "big") -> list[int]:
    return u32(v & 0xFFFFFFFF, order)


def f32(v: float, order: str = "big") -> list[int]:
    raw = struct.pack(">f", v)
    words = [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]
    return words if order == "big" else words[::-1]


def text(s: str, words: int) -> list[int]:
    raw = s.encode().ljust(words * 2, b"\x00")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, words * 2, 2)]


def put(image: dict[int, int], address: int, words: list[int]) -> None:
    for i, w in enumerate(words):
        image[address + i] = w


def block(image: dict[int, int], start: int, end: int) -> None:
    """Registers that exist on the device (zeros) — a documented block without holes."""
    for a in range(start, end):
        image.setdefault(a, 0)


# -- SunSpec -----------------------------------------------------------------------------------
def sunspec_image(base: int, models: list[tuple[int, int, dict[int, list[int]]]]) -> dict[int, int]:
    """'SunS' at base, then each (model id, L, {offset from model ID: words}), then 0xFFFF."""
    image: dict[int, int] = {}
    put(image, base, [0x5375, 0x6E53])
    address = base + 2
    for model_id, length, values in models:
        put(image, address, [model_id, length])
        block(image, address + 2, address + 2 + length)
        for offset, words in values.items():
            put(image, address + offset, words)
        address += 2 + length
    put(image, address, [0xFFFF, 0])
    return image


def common_model(length: int, manufacturer: str, serial: str) -> tuple[int, int, dict]:
    return (1, length, {2: text(manufacturer, 16), 18: text("Model X", 16),
                        50: text(serial, 16), 66: u16(1)})
