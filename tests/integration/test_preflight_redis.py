import pytest

from stack.errors import InsecureSettings
from stack.harness.redis_servers import LocalRedisServer
from stack.preflight import check_redis_auth, preflight
from stack.settings import Settings

pytestmark = pytest.mark.integration

STRONG = "s3cr3t-but-long-enough-0123456789"
SAFE_ENV = {
    "STACK_PROFILE": "production",
    "STACK_REDIS_PASSWORD": STRONG,
    "STACK_FLOWER_BASIC_AUTH": f"ops:{STRONG}",
    "STACK_FLOWER_COOKIE_SECRET": STRONG,
    "STACK_API_KEY": STRONG,
}


def test_production_refuses_a_redis_that_answers_without_a_password(stack_redis):
    settings = Settings.load(environ={**SAFE_ENV, "REDIS_URL": stack_redis.url})
    with pytest.raises(InsecureSettings) as caught:
        preflight(settings, {})
    assert "answers commands without a password" in str(caught.value)
    assert "STACK_REDIS_PASSWORD" in str(caught.value)


def test_a_redis_with_requirepass_passes_the_probe(tmp_path):
    server = LocalRedisServer(data_dir=tmp_path, password=STRONG)
    server.start()
    try:
        settings = Settings.load(environ={**SAFE_ENV, "REDIS_URL": server.url})
        assert check_redis_auth(settings) == []
        assert preflight(settings, {}) == []
    finally:
        server.kill()
