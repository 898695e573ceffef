"""The ICU glycaemic twin on synthetic patients: it tracks insulin sensitivity hour by hour and forecasts glucose."""

import numpy as np

from medtwin.scenarios.icu import icu_twin_spec, synthetic_stream, tracking_evaluation
from medtwin.twin.codec import twin_from_spec
from medtwin.scenarios.glucose_patients import sample_icu_patients


def test_the_twin_tracks_hourly_insulin_sensitivity_of_a_same_model_patient():
    patient = sample_icu_patients(1, model="icing", hours=25, seed=5)[0]
    synthetic = synthetic_stream(patient, 24, seed=1)
    twin = twin_from_spec(icu_twin_spec(), inputs=synthetic.stream.regimen)
    prior = twin.state().parameters["SI"]
    inside = []
    for m in synthetic.stream.measurements:
        twin = twin.assimilate([m])
        hour = int(m.time - 1e-9)
        if hour >= 6 and abs(m.time - round(m.time)) < 1e-9:  # on the hour, after a 6-h burn-in
            si = twin.state().parameters["SI"]
            true = patient.parameters["SI"] * patient.si_multipliers[hour]
            inside.append(si["p05"] <= true <= si["p95"])
    final = twin.state().parameters["SI"]
    assert final["p95"] / final["p05"] < 0.5 * prior["p95"] / prior["p05"]  # the data narrowed SI
    assert np.mean(inside) >= 0.7, inside


def test_tracking_a_different_model_patient_gives_calibrated_one_hour_forecasts():
    patient = sample_icu_patients(1, model="bergman_insulin", hours=25, seed=8)[0]
    result = tracking_evaluation(synthetic_stream(patient, 24, seed=2))
    assert result.n_forecasts == 23
    assert result.rmse_1h < 0.8  # mmol/L, against true glucose ~4-10 mmol/L
    assert 0.7 <= result.coverage_90 <= 1.0


def test_a_cgm_only_stream_without_clock_offset_is_not_flagged():
    # Every candidate shift is scored on the same readings: before, shifts that pushed the first readings
    # before t = 0 dropped them from the likelihood and won (+10 to +60 min "offsets" on honest streams).
    from dataclasses import replace

    from medtwin.assimilate.alarms import detect_clock_offset

    grid = np.arange(-6, 7) / 6.0                      # -60 .. +60 min every 10 min
    for seed in range(4):
        patient = sample_icu_patients(1, model="icing", hours=5, seed=seed)[0]
        synthetic = synthetic_stream(patient, 4, seed=seed)
        cgm = [replace(m, device="cgm") for m in synthetic.stream.measurements]
        twin = twin_from_spec(icu_twin_spec(), inputs=synthetic.stream.regimen)
        report = detect_clock_offset(twin, cgm, "cgm", offsets_h=grid)
        assert report.alarm is None, (seed, report.alarm.message)
