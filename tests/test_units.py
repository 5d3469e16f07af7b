from footprint.common import units


def test_kwh_and_wh_from_joules():
    assert units.j_to_kwh(3_600_000) == 1.0
    assert units.j_to_kwh(1800) == 0.0005
    assert units.j_to_wh(7200) == 2.0


def test_co2e_hand_computed():
    # 36 MJ = 10 kWh; at 400 g/kWh and PUE 1.2: 10 * 1.2 * 400 = 4800 g
    assert units.co2e_g(36_000_000, 400, pue=1.2) == 4800.0
    assert units.co2e_g(3_600_000, 56) == 56.0


def test_costs_hand_computed():
    assert units.energy_cost(7_200_000, 0.25) == 0.5  # 2 kWh at 0.25/kWh
    assert units.instance_cost(5400, 2.0) == 3.0  # 1.5 h at 2/h


def test_per_token_never_silent_zero():
    assert units.per_token(100.0, 50) == 2.0
    assert units.per_token(100.0, 0) is None
    assert units.per_token(100.0, None) is None
    assert units.per_token(None, 10) is None
    assert units.per_million_tokens(2.0, 1000) == 2000.0


def test_interpolate():
    assert units.interpolate(1.5, 1.0, 10.0, 2.0, 20.0) == 15.0
    assert units.interpolate(2.0, 2.0, 5.0, 2.0, 5.0) == 5.0
