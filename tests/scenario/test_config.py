"""Configuration layers and validation errors, through the public ``load_config``.

Layers, later wins: defaults.yaml → user file (DEMI_CONFIG) → .env → environment → overrides.
Tests pass their own ``environ`` and ``.env`` path, so the real environment never leaks in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from src.core.config import DemiConfig, load_config
from src.llm import ConfigError, DemiError, UnifiedLLMInference

pytestmark = pytest.mark.timeout(30)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def layers(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A user file, a .env and an environment that each set some of the same keys."""
    user = write(tmp_path / "demi.yaml", """
llm:
  ollama:
    base_url: "http://file-ollama:11434"
    model: "file-model"
    timeout: 11
  lmstudio:
    base_url: "http://file-lmstudio:1234"
    model: "file-lms-model"
  health_check_interval: 30
conductor:
  port: 9001
""")
    dotenv = write(tmp_path / ".env", (
        "OLLAMA_BASE_URL=http://dotenv-ollama:11434\n"
        "LMSTUDIO_BASE_URL=http://dotenv-lmstudio:1234\n"
        "OLLAMA_MODEL=dotenv-model\n"
        "DEMI_PORT=9002\n"
    ))
    environ = {
        "DEMI_CONFIG": str(user),
        "OLLAMA_BASE_URL": "http://env-ollama:11434",
        "DEMI_PORT": "9003",
    }
    return environ, dotenv


def test_each_layer_overrides_the_one_below(layers: tuple[dict[str, str], Path]) -> None:
    """defaults < user file < .env < environment < overrides, key by key."""
    environ, dotenv = layers
    config = load_config(environ=environ, dotenv_path=dotenv,
                         overrides={"conductor.port": 9004})
    llm = config.llm
    assert llm.ollama.temperature == 0.7 and llm.ollama.context_window == 8192  # defaults
    assert llm.ollama.timeout == 11 and llm.health_check_interval == 30  # user file
    assert llm.lmstudio.model == "file-lms-model"  # user file (nothing above sets it)
    assert llm.lmstudio.base_url == "http://dotenv-lmstudio:1234"  # .env over file
    assert llm.ollama.model == "dotenv-model"  # .env over file
    assert llm.ollama.base_url == "http://env-ollama:11434"  # environment over .env
    assert config.conductor.port == 9004  # overrides over environment


def test_without_overrides_environment_wins(layers: tuple[dict[str, str], Path]) -> None:
    """With no command-line override the environment's value stands over .env and the file."""
    environ, dotenv = layers
    assert load_config(environ=environ, dotenv_path=dotenv).conductor.port == 9003
    del environ["DEMI_PORT"]
    assert load_config(environ=environ, dotenv_path=dotenv).conductor.port == 9002
    assert load_config(environ=environ, dotenv_path=None).conductor.port == 9001


def test_defaults_apply_with_no_layers(tmp_path: Path) -> None:
    """Nothing set anywhere → the guide's defaults (fallback on, 60 s checks, localhost URLs)."""
    llm = load_config(environ={}, dotenv_path=tmp_path / "missing.env").llm
    assert llm.provider == "ollama" and llm.enable_fallback is True
    assert llm.health_check_interval == 60
    assert llm.ollama.base_url == "http://localhost:11434"
    assert llm.lmstudio.base_url == "http://localhost:1234"
    assert llm.lmstudio.model is None


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("true", True), ("0", False)])
def test_fallback_switch_from_environment(raw: str, expected: bool) -> None:
    """DEMI_ENABLE_LLM_FALLBACK=false|true sets llm.enable_fallback."""
    config = load_config(environ={"DEMI_ENABLE_LLM_FALLBACK": raw}, dotenv_path=None)
    assert config.llm.enable_fallback is expected


def test_environment_is_not_modified(layers: tuple[dict[str, str], Path]) -> None:
    """Loading a .env never writes into os.environ."""
    environ, dotenv = layers
    before = dict(os.environ)
    load_config(environ=environ, dotenv_path=dotenv)
    assert dict(os.environ) == before


def _error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, DemiError)
    return str(info.value)


def test_bad_fallback_switch_in_environment_names_key_value_and_variable() -> None:
    """DEMI_ENABLE_LLM_FALLBACK=maybe → error naming llm.enable_fallback, 'maybe', the variable."""
    message = _error(environ={"DEMI_ENABLE_LLM_FALLBACK": "maybe"}, dotenv_path=None)
    assert "llm.enable_fallback" in message and "'maybe'" in message
    assert "DEMI_ENABLE_LLM_FALLBACK" in message


def test_bad_fallback_switch_in_dotenv_names_the_file(tmp_path: Path) -> None:
    """The same bad value coming from .env says it came from that .env file."""
    dotenv = write(tmp_path / ".env", "DEMI_ENABLE_LLM_FALLBACK=maybe\n")
    message = _error(environ={}, dotenv_path=dotenv)
    assert "llm.enable_fallback" in message and "'maybe'" in message
    assert str(dotenv) in message


def test_negative_timeout_in_user_file_names_key_and_value(tmp_path: Path) -> None:
    """timeout: -3 in the user file → error naming llm.ollama.timeout and -3."""
    user = write(tmp_path / "demi.yaml", "llm:\n  ollama:\n    timeout: -3\n")
    message = _error(environ={"DEMI_CONFIG": str(user)}, dotenv_path=None)
    assert "llm.ollama.timeout" in message and "-3" in message
    assert "greater than 0" in message


def test_base_url_without_scheme_names_key_value_and_fix(tmp_path: Path) -> None:
    """base_url: localhost → error naming llm.ollama.base_url, 'localhost' and an example URL."""
    user = write(tmp_path / "demi.yaml", "llm:\n  ollama:\n    base_url: localhost\n")
    message = _error(environ={"DEMI_CONFIG": str(user)}, dotenv_path=None)
    assert "llm.ollama.base_url" in message and "'localhost'" in message
    assert "http://" in message


def test_base_url_from_environment_names_the_variable() -> None:
    """A schemeless LMSTUDIO_BASE_URL names the key, the value and the variable it came from."""
    message = _error(environ={"LMSTUDIO_BASE_URL": "localhost:1234"}, dotenv_path=None)
    assert "llm.lmstudio.base_url" in message and "'localhost:1234'" in message
    assert "LMSTUDIO_BASE_URL" in message


def test_unknown_key_is_named(tmp_path: Path) -> None:
    """A misspelt key (llm.ollama.modle) is rejected, naming the key and saying it is unknown."""
    user = write(tmp_path / "demi.yaml", "llm:\n  ollama:\n    modle: llama3.2:1b\n")
    message = _error(environ={"DEMI_CONFIG": str(user)}, dotenv_path=None)
    assert "llm.ollama.modle" in message and "unknown key" in message


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    """Several mistakes in one file are all listed in one error."""
    user = write(tmp_path / "demi.yaml", (
        "llm:\n  ollama:\n    timeout: -3\n    base_url: localhost\n  helth_check_interval: 5\n"
    ))
    message = _error(environ={"DEMI_CONFIG": str(user)}, dotenv_path=None)
    for key in ("llm.ollama.timeout", "llm.ollama.base_url", "llm.helth_check_interval"):
        assert key in message


def test_dict_config_is_validated_by_unified_inference() -> None:
    """UnifiedLLMInference({...}) with a bad value raises ConfigError naming key and value."""
    with pytest.raises(ConfigError) as info:
        UnifiedLLMInference({"llm": {"ollama": {"timeout": -3}}})
    assert "llm.ollama.timeout" in str(info.value) and "-3" in str(info.value)


async def test_interval_from_environment_reaches_inference(tmp_path: Path) -> None:
    """DEMI_HEALTH_CHECK_INTERVAL=45 → llm._health_check_interval == 45."""
    config = load_config(environ={"DEMI_HEALTH_CHECK_INTERVAL": "45",
                                  "DEMI_EMBEDDED_ENABLED": "false"}, dotenv_path=None)
    llm = UnifiedLLMInference(config)
    try:
        assert llm._health_check_interval == 45
    finally:
        await llm.close()


def test_defaults_live_in_the_yaml_only() -> None:
    """No config model declares a default of its own (bar the llm.providers entries, which
    a YAML list cannot carry): every default comes from defaults.yaml."""
    from pydantic import BaseModel

    from src.core import config as cfg
    from src.core import schema

    models = [cfg.DemiConfig] + [
        m for m in vars(schema).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == schema.__name__
    ]
    assert len(models) > 10
    for model in models:
        if model is schema.ProviderEntry:
            continue
        defaulted = [n for n, f in model.model_fields.items() if not f.is_required()]
        assert defaulted == [], f"{model.__name__} has code defaults: {defaulted}"


def test_routing_affinity_is_read_only() -> None:
    """The frozen config is frozen all the way down: affinity cannot be changed in place."""
    config = DemiConfig.from_mapping({"llm": {"routing": {"affinity": {"code": ["lmstudio"]}}}})
    assert config.llm.routing.affinity == {"code": ("lmstudio",)}
    with pytest.raises(TypeError):
        config.llm.routing.affinity["chat"] = ("ollama",)  # type: ignore[index]


def test_provider_entries_take_kind_and_routing_keys() -> None:
    """llm.providers entries accept kind, weight, tags, keep_alive and embedding_model."""
    config = DemiConfig.from_mapping({"llm": {"providers": [
        {"name": "gpu-box", "kind": "ollama", "base_url": "http://10.0.0.2:11434/",
         "model": "llama3.2:1b", "keep_alive": "10m", "weight": 3, "tags": ["gpu"],
         "embedding_model": "nomic-embed-text"},
        {"name": "vllm", "base_url": "http://10.0.0.3:8000"},
    ]}})
    box, vllm = config.llm.providers
    assert (box.kind, box.base_url, box.weight, box.tags) == (
        "ollama", "http://10.0.0.2:11434", 3, ("gpu",))
    assert vllm.kind == "openai" and vllm.weight == 1


def test_ollama_entry_needs_a_model() -> None:
    """A kind: ollama entry without a model is refused with a message naming the key."""
    with pytest.raises(ConfigError, match=r"llm.providers\[box\].model"):
        DemiConfig.from_mapping({"llm": {"providers": [
            {"name": "box", "kind": "ollama", "base_url": "http://h:11434"}]}})


def test_canary_provider_must_exist() -> None:
    """llm.routing.canary.provider names a configured provider."""
    with pytest.raises(ConfigError, match=r"llm\.routing\.canary\.provider"):
        DemiConfig.from_mapping({"llm": {"routing": {"canary": {"provider": "nope"}}}})


def test_affinity_tag_must_exist() -> None:
    """An affinity entry tag:X needs some provider entry tagged X."""
    entry = {"name": "box", "base_url": "http://h:1", "tags": ["gpu"]}
    config = DemiConfig.from_mapping({"llm": {"providers": [entry], "routing": {
        "affinity": {"code": ["tag:gpu"]}}}})
    assert config.llm.routing.affinity["code"] == ("tag:gpu",)
    with pytest.raises(ConfigError, match="has that tag; tags"):
        DemiConfig.from_mapping({"llm": {"providers": [entry], "routing": {
            "affinity": {"code": ["tag:cpu"]}}}})
