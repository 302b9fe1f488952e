import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from stack.api.security import install_security
from stack.errors import InsecureSettings
from stack.settings import Settings

KEY = "k3y-that-is-long-enough-for-production"
LIMIT = 1000


def make_client(**env: str) -> TestClient:
    settings = Settings.load(environ={"STACK_MAX_BODY_BYTES": str(LIMIT), **env})
    api = FastAPI()

    @api.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @api.delete("/things/{thing}")
    async def delete(thing: str) -> dict[str, str]:
        return {"deleted": thing}

    @api.get("/metrics")
    async def metrics() -> dict[str, str]:
        return {"ok": "yes"}

    install_security(api, settings)
    return TestClient(api)


@pytest.fixture
def client() -> TestClient:
    return make_client(STACK_API_KEY=KEY)


def test_a_post_without_the_key_is_401(client):
    response = client.post("/echo", content=b"x")
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]


def test_a_post_with_a_wrong_key_is_401(client):
    assert client.post("/echo", content=b"x", headers={"X-API-Key": KEY + "x"}).status_code == 401


def test_a_post_with_the_key_reaches_the_route(client):
    response = client.post("/echo", content=b"hello", headers={"X-API-Key": KEY})
    assert response.status_code == 200
    assert response.json() == {"received": 5}


def test_a_delete_without_the_key_is_401(client):
    assert client.delete("/things/1").status_code == 401


def test_reads_need_no_key(client):
    assert client.get("/metrics").status_code == 200


def test_without_a_configured_key_dev_posts_pass():
    assert make_client().post("/echo", content=b"x").status_code == 200


def test_a_declared_length_above_the_ceiling_is_413(client):
    response = client.post("/echo", content=b"x" * (LIMIT + 1), headers={"X-API-Key": KEY})
    assert response.status_code == 413
    assert "STACK_MAX_BODY_BYTES" in response.json()["detail"]


def test_a_streamed_body_above_the_ceiling_is_413(client):
    def chunks():
        for _ in range(5):
            yield b"y" * 300  # 1500 bytes, no Content-Length: chunked

    response = client.post("/echo", content=chunks(), headers={"X-API-Key": KEY})
    assert response.status_code == 413


def test_a_streamed_body_below_the_ceiling_arrives_whole(client):
    def chunks():
        for _ in range(3):
            yield b"y" * 300

    response = client.post("/echo", content=chunks(), headers={"X-API-Key": KEY})
    assert response.json() == {"received": 900}


def test_a_body_at_the_ceiling_passes(client):
    response = client.post("/echo", content=b"x" * LIMIT, headers={"X-API-Key": KEY})
    assert response.status_code == 200


def test_the_production_api_refuses_to_start_without_a_key():
    with pytest.raises(InsecureSettings, match="STACK_API_KEY"):
        make_client(STACK_PROFILE="production")
