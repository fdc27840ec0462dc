import layer_sim


def test_package_imports_and_errors_are_value_errors():
    assert issubclass(layer_sim.LayerSimError, ValueError)
    assert issubclass(layer_sim.InputError, layer_sim.LayerSimError)
