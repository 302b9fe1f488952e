import pytest

from stack.checks.probes import StayedUp
from stack.errors import PortInUse
from stack.launcher.services import Port, Service, check_ports, stop_waves


def service(name, *ports, requires=(), external=False):
    return Service(
        name, f"run {name}", StayedUp(), ports=ports, requires=requires, external=external
    )


def taken(*numbers):
    return lambda port, host: port not in numbers


def test_a_taken_port_is_refused_naming_the_port_the_service_and_the_variable():
    services = [service("redis", Port(6390, "REDIS_URL")), service("api", Port(8101, "API_PORT"))]
    with pytest.raises(PortInUse) as refused:
        check_ports(services, is_free=taken(8101))
    assert (refused.value.service, refused.value.port, refused.value.variable) == (
        "api",
        8101,
        "API_PORT",
    )
    assert "port 8101 for api is already in use" in str(refused.value)
    assert "set API_PORT to a free port" in str(refused.value)


def test_free_ports_pass():
    check_ports([service("api", Port(8101, "API_PORT"))], is_free=taken())


def test_an_external_service_is_not_port_checked():
    check_ports([service("redis", Port(6379, "REDIS_URL"), external=True)], is_free=taken(6379))


def test_ports_are_checked_on_the_host_the_service_binds():
    seen = []
    check_ports(
        [service("api", Port(8101, "API_PORT", "0.0.0.0"))],
        is_free=lambda port, host: seen.append((port, host)) or True,
    )
    assert seen == [(8101, "0.0.0.0")]


def test_dependents_stop_together_before_redis():
    services = [service("redis"), *(service(n, requires=("redis",)) for n in ("api", "worker"))]
    assert stop_waves(services) == [["api", "worker"], ["redis"]]


def test_a_chain_stops_from_its_end():
    services = [service("a"), service("b", requires=("a",)), service("c", requires=("b",))]
    assert stop_waves(services) == [["c"], ["b"], ["a"]]


def test_a_dependency_cycle_still_stops_everything():
    services = [service("a", requires=("b",)), service("b", requires=("a",))]
    assert stop_waves(services) == [["a", "b"]]
