"""Synthetic manufacturing data: machine readings with rare failures, and run-to-failure series.

Machine readings (:func:`machine_readings`)
-------------------------------------------
Shaped like the AI4I 2020 predictive-maintenance table (one row per reading, a product tier
``Type`` L/M/H with shares 60/30/10 %), so the sample exercises the same path as the real
file. Columns: ``UDI`` (reading id), ``Product ID`` (tier letter + serial), ``Type``,
``Air temperature [K]`` (300 + N(0, 2)), ``Process temperature [K]`` (air + 10 + N(0, 1)),
``Rotational speed [rpm]`` (N(1540, 160), at least 1160), ``Torque [Nm]`` (falls with speed,
40 - 0.055 (speed - 1540) + N(0, 5), at least 4), ``Tool wear [min]`` (uniform 0-250),
then ``Machine failure`` and the five failure modes, drawn with AI4I's published rules:

* TWF tool wear failure: wear between 200 and 240 min, at random (5 % of those readings);
* HDF heat dissipation: process - air temperature < 8.6 K and speed < 1380 rpm;
* PWF power: torque x speed (W) below 3500 or above 9000;
* OSF overstrain: wear x torque above 11000 (L), 12000 (M), 13000 (H) min Nm;
* RNF random: 0.1 % of readings.

``Machine failure`` is 1 when any mode fires: about 7 % of readings (AI4I: 3.4 %; a little
more here so that a 1,000-row sample has enough failures in its test split). The modes
are the *cause* of the label and must be excluded as features (they leak it).

Operational, not personal: the tier ``Type`` changes the overstrain limit, so failure rates
differ by tier (L highest); the audit reports performance per tier as an operational
disparity. No person is described by these data.

Run-to-failure series (:func:`run_to_failure`)
-----------------------------------------------
Shaped like NASA's C-MAPSS turbofan files: ``unit``, ``cycle`` (1, 2, ...), the production
``line`` (A/B/C, one per unit), three operating settings and eight sensors, and ``rul``
(cycles left until failure, known because every unit runs to failure). Each unit's
lifetime L is 60-200 cycles, scaled so that the table has exactly ``n_rows`` rows. A
hidden health index degrades as ``d(t) = w0 + (1 - w0) exp(-(L - t) / tau)`` (initial wear
w0 in 0-0.1, time constant tau in 25-45 cycles per unit: flat for most of the life, rising
in the last few dozen cycles; failure at d = 1). Early in life units look alike, which is
why the RUL target is capped (125 cycles by default).
Each cycle runs in one of three operating conditions (settings drawn per cycle) that shift
every sensor by an offset linear in the settings (a tenth of C-MAPSS-like effects, so a
small model learns to discount them from a few units; C-MAPSS FD002/FD004 need more data
or per-condition normalisation). Sensors 1-5 move with ``d`` (some up,
some down) plus noise; sensors 6-8 are noise only (as several C-MAPSS sensors are).

Planted operational disparity: line C's sensors are twice as noisy (older instruments),
so RUL predictions for line C units are less accurate; the error-by-line audit shows it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TYPES = ("L", "M", "H")
TYPE_SHARES = (0.6, 0.3, 0.1)
OVERSTRAIN_LIMIT = {"L": 11000.0, "M": 12000.0, "H": 13000.0}
FAILURE_MODES = ("TWF", "HDF", "PWF", "OSF", "RNF")

LINES = ("A", "B", "C")
NOISY_LINE = "C"
NOISY_LINE_FACTOR = 2.0
MIN_LIFE, MAX_LIFE = 60, 200
N_SENSORS = 8
# (operating setting 1, 2, 3) of the three operating conditions, like C-MAPSS FD002.
CONDITIONS = np.array([[0.0, 0.0, 100.0], [20.0, 0.7, 100.0], [35.0, 0.84, 60.0]])
# Sensor baseline, its response to degradation, and its noise.
SENSOR_BASE = np.array([642.0, 1590.0, 1400.0, 554.0, 47.5, 21.6, 2388.0, 8140.0])
SENSOR_GAIN = np.array([2.5, 30.0, 40.0, -4.0, 1.2, 0.0, 0.0, 0.0])
SENSOR_NOISE = np.array([0.5, 6.0, 8.0, 0.8, 0.25, 0.5, 0.1, 8.0])
# Offset per unit of each operating setting, per sensor (conditions move every sensor);
# scaled down so that the offsets stay comparable to the wear signal (see the docstring).
SETTING_EFFECT = 0.1 * np.array([
    [0.4, 5.0, 6.0, -2.0, 0.2, 0.1, 0.5, 10.0],
    [3.0, 10.0, 20.0, -5.0, 1.0, 0.4, 2.0, 30.0],
    [-0.02, -0.3, -0.4, 0.1, -0.01, 0.0, -0.01, -0.5],
])


def machine_readings(n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` AI4I-like readings with rare failures (see the module docstring)."""
    rng = np.random.default_rng(seed)
    tier = rng.choice(TYPES, n_rows, p=TYPE_SHARES)
    air = 300.0 + rng.normal(0, 2, n_rows)
    process = air + 10.0 + rng.normal(0, 1, n_rows)
    speed = np.maximum(1160.0, rng.normal(1540, 160, n_rows)).round()
    torque = np.maximum(4.0, 40.0 - 0.055 * (speed - 1540) + rng.normal(0, 5, n_rows))
    wear = rng.integers(0, 251, n_rows)
    power = torque * speed * 2 * np.pi / 60
    limit = np.array([OVERSTRAIN_LIMIT[t] for t in tier])
    modes = {
        "TWF": (wear >= 200) & (wear <= 240) & (rng.random(n_rows) < 0.05),
        "HDF": (process - air < 8.6) & (speed < 1380),
        "PWF": (power < 3500) | (power > 9000),
        "OSF": wear * torque > limit,
        "RNF": rng.random(n_rows) < 0.001,
    }
    failure = np.logical_or.reduce(list(modes.values()))
    serial = rng.integers(10000, 99999, n_rows)
    frame = pd.DataFrame({
        "UDI": np.arange(1, n_rows + 1),
        "Product ID": [f"{t}{s}-{i}" for i, (t, s) in enumerate(zip(tier, serial, strict=True))],
        "Type": tier,
        "Air temperature [K]": air.round(1),
        "Process temperature [K]": process.round(1),
        "Rotational speed [rpm]": speed.astype(int),
        "Torque [Nm]": torque.round(1),
        "Tool wear [min]": wear,
        "Machine failure": failure.astype(int),
    })
    for name in FAILURE_MODES:
        frame[name] = modes[name].astype(int)
    return frame


def _lifetimes(n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Unit lifetimes between about MIN_LIFE and MAX_LIFE that add up to ``n_rows``."""
    mean_life = (MIN_LIFE + MAX_LIFE) / 2
    n_units = max(1, int(round(n_rows / mean_life)))
    raw = rng.uniform(MIN_LIFE, MAX_LIFE, n_units)
    lives = np.maximum(1, np.floor(raw * n_rows / raw.sum()).astype(int))
    lives[-1] += n_rows - lives.sum()
    return lives


def run_to_failure(n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` C-MAPSS-like run-to-failure readings (see the module docstring)."""
    rng = np.random.default_rng(seed)
    frames = []
    for number, life in enumerate(_lifetimes(n_rows, rng), start=1):
        line = LINES[(number - 1) % len(LINES)] if number <= len(LINES) else rng.choice(LINES)
        cycles = np.arange(1, life + 1)
        start_wear = rng.uniform(0, 0.1)
        # Wear shows in the last few dozen cycles (time constant 25-45 cycles), as a
        # failing bearing or a fouling compressor does: earlier, units look alike.
        speed = rng.uniform(25, 45)
        health = start_wear + (1 - start_wear) * np.exp(-(life - cycles) / speed)
        settings = CONDITIONS[rng.integers(0, len(CONDITIONS), life)]
        settings = settings + rng.normal(0, [0.5, 0.01, 0.0], settings.shape)
        noise = SENSOR_NOISE * (NOISY_LINE_FACTOR if line == NOISY_LINE else 1.0)
        # Each unit responds a little differently to the same wear (manufacturing spread).
        gain = SENSOR_GAIN * rng.uniform(0.9, 1.1)
        sensors = (SENSOR_BASE + settings @ SETTING_EFFECT + health[:, None] * gain
                   + rng.normal(0, 1, (life, N_SENSORS)) * noise)
        unit = pd.DataFrame({"unit": f"U{number:03d}", "cycle": cycles, "line": line})
        for k in range(3):
            unit[f"op_setting_{k + 1}"] = settings[:, k].round(4)
        for k in range(N_SENSORS):
            unit[f"sensor_{k + 1}"] = sensors[:, k].round(3)
        unit["rul"] = life - cycles
        frames.append(unit)
    return pd.concat(frames, ignore_index=True)
